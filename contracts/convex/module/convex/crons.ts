// Push jobs for deployments with no `factory dispatch` of their own: this module dispatches due
// slots itself. Every slot is enqueued once however often this runs, and however many other
// dispatchers (a cron'd `factory dispatch`, `factory serve`) race it; five minutes bounds lateness.
import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();

crons.interval("factory push dispatch", { minutes: 5 }, internal.agentFactoryAdmin.pushDispatchDue, {});

export default crons;
