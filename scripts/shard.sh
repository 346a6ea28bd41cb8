#!/usr/bin/env bash
# The action's shard step: resume from this shard's newest earlier attempt if one was fetched,
# then run ci-eval. Settings arrive as CI_EVAL_* variables (empty ones count as unset).
set -euo pipefail
previous=$(find "$RUNNER_TEMP/ci-eval-previous" -mindepth 2 -maxdepth 2 -type d -name "shard-$SHARD_INDEX-attempt-*" \
  2>/dev/null | sort -t- -k4 -n | tail -n 1 || true)
if [ -n "$previous" ] && [ ! -e "$OUT" ]; then
  echo "resuming from $previous"
  mkdir -p "$(dirname "$OUT")"
  cp -r "$previous" "$OUT"
fi
args=(shard --index "$SHARD_INDEX" --of "$SHARD_COUNT" --output "$OUT")
if [ -n "${CONFIG:-}" ]; then args+=(--config "$CONFIG"); fi
"$EVAL_BIN" "${args[@]}"
