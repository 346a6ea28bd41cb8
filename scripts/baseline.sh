#!/usr/bin/env bash
# The evaluate workflow's baseline step: the newest unexpired report artifact of a completed
# push run of the calling workflow on BRANCH, in this repository (a fork's branch of the same
# name is not ours), whatever the run's conclusion: with many shards a run is rarely all green
# (a shard with an infrastructure failure exits 1), and the report says itself how complete it
# is; the comparison uses only instances with a verdict on both sides. None is a notice and an
# inconclusive comparison, never a red job.
set -euo pipefail
workflow=$(basename "${GITHUB_WORKFLOW_REF%%@*}")  # a called workflow's ref names its caller
runs=$(gh api "repos/$REPO/actions/workflows/$workflow/runs?branch=$BRANCH&event=push&status=completed&per_page=30" \
  | jq -r --arg repo "$REPO" '.workflow_runs[] | select(.head_repository.full_name == $repo) | .id')
for run in $runs; do
  found=$(gh api "repos/$REPO/actions/runs/$run/artifacts?name=$ARTIFACT" \
    | jq -r '[.artifacts[] | select(.expired | not)] | length')
  if [ "$found" -gt 0 ]; then
    echo "using $ARTIFACT of run $run on $BRANCH"
    echo "run-id=$run" >> "$GITHUB_OUTPUT"
    echo "report=$RUNNER_TEMP/ci-eval-baseline/report.json" >> "$GITHUB_OUTPUT"
    exit 0
  fi
done
echo "::notice title=ci-eval::no $ARTIFACT artifact on a completed push run of $BRANCH: nothing to compare against"
echo "missing=true" >> "$GITHUB_OUTPUT"
