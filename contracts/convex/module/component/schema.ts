// The component's schema: the same factory tables the copy-the-files layout spreads into an app.
import { defineSchema } from "convex/server";
import { factoryTables } from "../convex/factory/tables";

export default defineSchema(factoryTables);
