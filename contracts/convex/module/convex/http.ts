// The deployment's HTTP routes: the Telegram webhook, as `factory serve` answers it
// (/telegram/webhook/{agentKey}) and at upstream's path (/agent-factory/telegram/webhook).
// A host app that already has a convex/http.ts calls `registerRoutes(http, {...})` there instead.
import { httpRouter } from "convex/server";
import { registerRoutes } from "./factory/telegram";

const http = httpRouter();
// Unbound users: FACTORY_TELEGRAM_REQUIRE_BINDING=true refuses them; FACTORY_TELEGRAM_FALLBACK_AGENT
// names the agent they talk to (default: the webhook's own agent). Read per request.
registerRoutes(http);
registerRoutes(http, { pathPrefix: "/agent-factory" });
export default http;
