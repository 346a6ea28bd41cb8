#!/usr/bin/env bash
# The baseline history: the report artifacts of up to RUNS (default 5) recent completed push or
# schedule runs of the calling workflow on BRANCH, in this repository (a fork's branch of the same
# name is not ours), whatever each run's conclusion: with many shards a run is rarely all green
# (a shard with an infrastructure failure exits 1), and each report says itself how complete it
# is; the comparison uses only instances with a verdict on both sides. Reports that have expired
# are skipped. Each is downloaded to $RUNNER_TEMP/ci-eval-baseline/run-<id>/. None is a notice
# and an inconclusive comparison, never a red job.
set -euo pipefail
workflow=$(basename "${GITHUB_WORKFLOW_REF%%@*}")  # a called workflow's ref names its caller
want=${RUNS:-5}
case "$want" in '' | *[!0-9]*) echo "::error title=ci-eval::baseline-runs must be a number, not '$want'"; exit 2 ;; esac
dir="$RUNNER_TEMP/ci-eval-baseline"
runs=$(gh api "repos/$REPO/actions/workflows/$workflow/runs?branch=$BRANCH&status=completed&per_page=100" \
  | jq -r --arg repo "$REPO" '.workflow_runs[]
      | select(.head_repository.full_name == $repo and (.event == "push" or .event == "schedule")) | .id')
# Which evaluation of its pull request this is: its earlier runs of this workflow on the same head
# that reached a verdict (success or failure; a skipped or cancelled run spent no alpha), plus one.
if [ -n "${HEAD_REF:-}" ]; then
  earlier=$(gh api "repos/$REPO/actions/workflows/$workflow/runs?branch=$HEAD_REF&event=pull_request&status=completed&per_page=100" \
    | jq -r --arg head "${HEAD_REPO:-}" --arg me "${RUN_ID:-0}" '[.workflow_runs[]
        | select(.head_repository.full_name == $head and (.id | tostring) != $me
                 and (.conclusion == "success" or .conclusion == "failure"))] | length')
  echo "push=$((earlier + 1))" >> "$GITHUB_OUTPUT"
fi
used=()
for run in $runs; do
  [ "${#used[@]}" -lt "$want" ] || break
  id=$(bash "$(dirname "$0")/newest.sh" "$run")  # the newest attempt's report of that run
  if [ -n "$id" ]; then
    mkdir -p "$dir/run-$run"
    gh api "repos/$REPO/actions/artifacts/$id/zip" > "$dir/run-$run.zip"
    python3 -m zipfile -e "$dir/run-$run.zip" "$dir/run-$run/" && rm "$dir/run-$run.zip"
    used+=("$run")
  fi
done
if [ "${#used[@]}" -gt 0 ]; then
  echo "using $ARTIFACT of ${#used[@]} run(s) on $BRANCH: ${used[*]}"
  {
    echo "run-ids=${used[*]}"
    echo "reports=$dir"
  } >> "$GITHUB_OUTPUT"
  exit 0
fi
echo "::notice title=ci-eval::no $ARTIFACT artifact on a completed push or schedule run of $BRANCH: nothing to compare against"
echo "missing=true" >> "$GITHUB_OUTPUT"
