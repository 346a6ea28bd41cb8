#!/usr/bin/env bash
# The action's shard step: resume from this shard's newest earlier attempt if one was fetched,
# then run ci-eval. Settings arrive as CI_EVAL_* variables (empty ones count as unset).
set -euo pipefail
# The newest by attempt number (attempt 10 after 2), whatever dashes the path holds. When its
# pattern matches one artifact, download-artifact extracts it straight into the path (depth 1);
# several go into a folder each, named for the artifact (depth 2).
previous=$(find "$RUNNER_TEMP/ci-eval-previous" -mindepth 1 -maxdepth 2 -type d -name "shard-$SHARD_INDEX-attempt-*" \
  2>/dev/null | awk -F'-attempt-' '{ print $NF "\t" $0 }' | sort -n | tail -n 1 | cut -f 2- || true)
if [ -n "$previous" ] && [ ! -e "$OUT" ]; then
  echo "resuming from $previous"
  mkdir -p "$(dirname "$OUT")"
  cp -r "$previous" "$OUT"
fi
# The deadline counts from the action's start: what setup (Ollama, the model) took is spent.
if [ -n "${DEADLINE_MINUTES:-}" ] && [ -n "${STARTED:-}" ]; then
  CI_EVAL_DEADLINE_MINUTES=$(awk -v m="$DEADLINE_MINUTES" -v s="$STARTED" -v n="$(date +%s)" \
    'BEGIN { left = m - (n - s) / 60; printf "%.2f", (left > 1 ? left : 1) }')
  export CI_EVAL_DEADLINE_MINUTES
  echo "deadline: $CI_EVAL_DEADLINE_MINUTES minutes from now"
fi
# An agent command runs confined by bubblewrap, through sudo on a runner: install it when one is set.
if [ -n "${CI_EVAL_AGENT_COMMAND:-}" ] || { [ -n "${CONFIG:-}" ] && grep -Eq '^[[:space:]]*agent_command[[:space:]]*=' "$CONFIG"; }; then
  if ! command -v bwrap >/dev/null 2>&1; then
    echo "installing bubblewrap for the agent command"
    sudo -n apt-get update -qq && sudo -n apt-get install -y -qq bubblewrap >/dev/null \
      || echo "::warning::could not install bubblewrap: the agent command cannot run confined"
  fi
fi
args=(shard --index "$SHARD_INDEX" --of "$SHARD_COUNT" --output "$OUT")
if [ -n "${CONFIG:-}" ]; then args+=(--config "$CONFIG"); fi
if [ -n "${PLAN:-}" ]; then args+=(--plan "$PLAN"); fi
"$EVAL_BIN" "${args[@]}"
