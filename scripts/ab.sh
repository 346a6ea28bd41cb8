#!/usr/bin/env bash
# The ab action's answer: ci-eval ab writes the job summary; its exit code is the answer (0 better,
# 1 worse, 3 no difference shown, 2 bad input), given to the caller as an output, and failing the
# step only where fail-unless asks.
set -euo pipefail
status=0
"$EVAL_BIN" ab "$A" "$B" --alpha "$ALPHA" || status=$?
case $status in
  0) answer=better ;;
  1) answer=worse ;;
  3) answer="no difference shown" ;;
  *) exit "$status" ;;
esac
echo "answer=$answer" >> "$GITHUB_OUTPUT"
case "$FAIL_UNLESS:$answer" in
  better:better | not-worse:better | "not-worse:no difference shown" | :*) exit 0 ;;
  better:*) echo "::error::B is not shown better than A: $answer" >&2; exit 1 ;;
  *) echo "::error::B is worse than A" >&2; exit 1 ;;
esac
