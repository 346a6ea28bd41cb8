#!/usr/bin/env bash
# The aggregate action's step: merge the downloaded shard artifacts and judge them against the
# baseline history; exit 1 on a regression. Inconclusive (exit 3: no baseline, or too little
# power; exit 4: instances without a verdict that could decide it) is a warning here unless
# ON_INCONCLUSIVE is fail; the verdict and verdict-cause outputs say which.
set -euo pipefail
args=(aggregate "$RUNNER_TEMP/ci-eval-artifacts" --output "$RUNNER_TEMP/ci-eval-report")
baseline=${BASELINE:-${FOUND_BASELINE:-}}
if [ -n "$baseline" ]; then args+=(--baseline "$baseline"); fi
if [ -n "${ALPHA:-}" ]; then args+=(--alpha "$ALPHA"); fi
if [ -n "${PUSH:-}" ]; then args+=(--push "$PUSH"); fi
if [ -n "${MAX_DETECTABLE_DROP:-}" ]; then args+=(--max-detectable-drop "$MAX_DETECTABLE_DROP"); fi
if [ -n "${FAIL_UNDER:-}" ]; then args+=(--fail-under "$FAIL_UNDER"); fi
if [ -n "${MAX_NEW_FAILURES:-}" ]; then args+=(--max-new-failures "$MAX_NEW_FAILURES"); fi
if [ "${FAIL_ON_SUSPICIOUS:-false}" = "true" ]; then args+=(--fail-on-suspicious); fi
if [ "${ALLOW_PARTIAL:-false}" = "true" ]; then args+=(--allow-partial); fi
if [ "${BASELINE_MISSING:-false}" = "true" ]; then args+=(--baseline-missing); fi
on_inconclusive=${ON_INCONCLUSIVE:-warn}
case "$on_inconclusive" in warn | fail) ;; *) echo "::error title=ci-eval::on-inconclusive is warn or fail, not '$on_inconclusive'"; exit 2 ;; esac
args+=(--on-inconclusive "$on_inconclusive")
status=0
"$EVAL_BIN" "${args[@]}" || status=$?
# A fork's pull request gets no comment (the comment job needs a write token it never has): say
# here, in the job every run has, where its verdict is.
if [ -n "${HEAD_REPO:-}" ] && [ "$HEAD_REPO" != "${REPO:-}" ]; then
  echo "::notice title=ci-eval::a pull request from a fork gets no comment (its token is read-only): the verdict is in this run's job summary, ${GITHUB_SERVER_URL:-https://github.com}/${REPO:-}/actions/runs/${GITHUB_RUN_ID:-}"
fi
# 3: inconclusive for lack of data; 4: because the run lost verdicts (not significantly more than
# its baseline: significantly more is a regression, exit 1, whatever on-inconclusive says).
if { [ "$status" -eq 3 ] || [ "$status" -eq 4 ]; } && [ "$on_inconclusive" = "warn" ]; then
  why=$([ "$status" -eq 4 ] && echo "the run lost verdicts" || echo "lack of data")
  echo "::warning title=ci-eval::verdict inconclusive: $why (see the job summary)"
  exit 0
fi
exit "$status"
