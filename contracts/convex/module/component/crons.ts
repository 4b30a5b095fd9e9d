// Push jobs dispatch themselves inside the component, as the copy-the-files layout's crons.ts
// does: each slot is enqueued once however often this runs; five minutes bounds lateness.
import { cronJobs } from "convex/server";
import { api } from "./_generated/api";

const crons = cronJobs();

crons.interval("factory push dispatch", { minutes: 5 }, api.lib.pushDispatchDue, {});

export default crons;
