// The host's router: its own routes, plus the factory's Telegram webhook under /agent-factory.
import { httpRouter } from "convex/server";
import { registerRoutes } from "../../client";
import { components } from "./_generated/api";

const http = httpRouter();
registerRoutes(http, components.agentFactory, { pathPrefix: "/agent-factory" });
export default http;
