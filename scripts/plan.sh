#!/usr/bin/env bash
# The plan action's step: load the dataset once and plan; the plan file (instances, costs,
# shards) goes up as an artifact so that no shard job loads the dataset or plans again.
set -euo pipefail
dir="$RUNNER_TEMP/ci-eval-plan"
args=(plan --output "$dir/plan.json")
# A shard count wins over the budget, which keeps its default when shards are given.
if [ -n "${SHARDS:-}" ]; then args+=(--of "$SHARDS")
elif [ -n "${BUDGET_MINUTES:-}" ]; then args+=(--budget-minutes "$BUDGET_MINUTES"); fi
if [ -n "${TIMINGS:-}" ]; then args+=(--timings "$TIMINGS"); fi
config=$(bash "$(dirname "$0")/settings.sh" plan)
if [ -n "$config" ]; then args+=(--config "$config"); fi
matrix=$("$EVAL_BIN" "${args[@]}")
{
  echo "matrix=$matrix"
  echo "dir=$dir"
  # One plan a run attempt: "Re-run all jobs" plans again and its shards take that plan, never an
  # earlier attempt's; "Re-run failed jobs" keeps the plan job's output, attempt 1's name.
  echo "artifact=${PREFIX:-ci-eval}-plan-attempt-${GITHUB_RUN_ATTEMPT:-1}"
} >> "$GITHUB_OUTPUT"
