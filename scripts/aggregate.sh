#!/usr/bin/env bash
# The aggregate action's step: merge the downloaded shard artifacts; exit 1 on a regression.
set -euo pipefail
args=(aggregate "$RUNNER_TEMP/ci-eval-artifacts" --output "$RUNNER_TEMP/ci-eval-report")
if [ -n "${BASELINE:-}" ]; then args+=(--baseline "$BASELINE"); fi
if [ -n "${FAIL_UNDER:-}" ]; then args+=(--fail-under "$FAIL_UNDER"); fi
if [ -n "${MAX_NEW_FAILURES:-}" ]; then args+=(--max-new-failures "$MAX_NEW_FAILURES"); fi
if [ "${ALLOW_PARTIAL:-false}" = "true" ]; then args+=(--allow-partial); fi
"$EVAL_BIN" "${args[@]}"
