// `npm run build` (and `npm pack` / `npm publish`, through prepack): the package in dist/.
// tsc compiles the component, the host wrappers and the factory modules they import; the app's
// committed convex/_generated types come along, since the factory modules' declarations name them.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync(join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit", cwd: root });
cpSync(join(root, "convex", "_generated"), join(root, "dist", "convex", "_generated"), { recursive: true });
for (const entry of ["dist/component/convex.config.js", "dist/client/index.js", "dist/client/index.d.ts"]) {
  if (!existsSync(join(root, entry))) throw new Error(`build: ${entry} is missing`);
}
