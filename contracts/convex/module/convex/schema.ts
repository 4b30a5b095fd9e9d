// The deployment's schema: the factory tables (factory/tables.ts). An application that hosts the
// module spreads `factoryTables` into its own schema instead.
import { defineSchema } from "convex/server";
import { factoryTables } from "./factory/tables";

export { factoryTables };
export default defineSchema(factoryTables);
