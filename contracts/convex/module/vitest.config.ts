import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "edge-runtime", // close to Convex's runtime: web APIs, no Node built-ins
    server: { deps: { inline: ["convex-test"] } },
    include: ["convex/**/*.test.ts"],
    restoreMocks: true,
  },
});
