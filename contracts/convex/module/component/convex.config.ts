// The factory queue as a Convex component: a host app installs it with `app.use(factory)` in its
// own convex/convex.config.ts and reaches it as `components.agentFactory` (the default name,
// upstream agent-factory's). Its tables live in the component, apart from the host's.
import { defineComponent } from "convex/server";

const component = defineComponent("agentFactory");

export default component;
