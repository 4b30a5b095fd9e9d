import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "edge-runtime", // close to Convex's runtime: web APIs, no Node built-ins
    server: { deps: { inline: ["convex-test"] } },
    include: ["convex/**/*.test.ts", "client/**/*.test.ts"],
    restoreMocks: true,
    // Timeouts are not assertions: a loaded 2-core CI machine must not fail a correct test.
    testTimeout: 60_000,
  },
});
