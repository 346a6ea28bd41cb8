#!/usr/bin/env bash
# The aggregate action's step: merge the downloaded shard artifacts; exit 1 on a regression.
# Inconclusive (exit 3: instances without a verdict, e.g. a crashed shard whose own job is
# already red) is a warning here, not a second red job; the verdict output says which.
set -euo pipefail
args=(aggregate "$RUNNER_TEMP/ci-eval-artifacts" --output "$RUNNER_TEMP/ci-eval-report")
baseline=${BASELINE:-${FOUND_BASELINE:-}}
if [ -n "$baseline" ]; then args+=(--baseline "$baseline"); fi
if [ -n "${FAIL_UNDER:-}" ]; then args+=(--fail-under "$FAIL_UNDER"); fi
if [ -n "${MAX_NEW_FAILURES:-}" ]; then args+=(--max-new-failures "$MAX_NEW_FAILURES"); fi
if [ "${FAIL_ON_SUSPICIOUS:-false}" = "true" ]; then args+=(--fail-on-suspicious); fi
if [ "${ALLOW_PARTIAL:-false}" = "true" ]; then args+=(--allow-partial); fi
if [ "${BASELINE_MISSING:-false}" = "true" ]; then args+=(--baseline-missing); fi
status=0
"$EVAL_BIN" "${args[@]}" || status=$?
if [ "$status" -eq 3 ]; then
  echo "::warning title=ci-eval::verdict inconclusive: instances without a verdict or no baseline (see the job summary)"
  exit 0
fi
exit "$status"
