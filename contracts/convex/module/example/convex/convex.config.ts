// A host app that installs the factory component. In your app the import is the package's:
//   import factory from "factory-convex-module/convex.config.js";
import { defineApp } from "convex/server";
import factory from "../../component/convex.config";

const app = defineApp();
app.use(factory); // reachable as components.agentFactory; `app.use(factory, { name })` for another
export default app;
