#!/usr/bin/env bash
# The shard action's naming step: the shard's folder and artifact (prefixed, so that two
# evaluations in one workflow run do not collide), the plan file, the settings file, and where
# the model lives.
set -euo pipefail
root="$RUNNER_TEMP/ci-eval-results"
models="$HOME/.ollama/models"
# ubuntu-latest has ~14 GB free on / and ~66 GB on /mnt: the model goes where the room is.
if [ "${FREE_DISK:-false}" = "true" ] && [ -n "$(bash "$(dirname "$0")/larger-disk.sh")" ] && sudo -n true 2>/dev/null; then
  sudo mkdir -p /mnt/ci-eval-ollama-models
  sudo chown "$(id -u):$(id -g)" /mnt/ci-eval-ollama-models
  models=/mnt/ci-eval-ollama-models
fi
{
  echo "started=$(date +%s)"  # the shard's deadline counts from here
  echo "root=$root"
  echo "dir=$root/shard-$SHARD_INDEX-attempt-$GITHUB_RUN_ATTEMPT"
  echo "artifact=${PREFIX:-ci-eval}-shard-$SHARD_INDEX-attempt-$GITHUB_RUN_ATTEMPT"
  echo "models=$models"
  if [ -n "${PLAN_ARTIFACT:-}" ]; then echo "plan=$RUNNER_TEMP/ci-eval-plan/plan.json"; fi
  echo "settings=$(bash "$(dirname "$0")/settings.sh" "shard-$SHARD_INDEX")"
} >> "$GITHUB_OUTPUT"
