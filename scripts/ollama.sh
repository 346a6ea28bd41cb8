#!/usr/bin/env bash
# The action's Ollama step: install the pinned release (cached), serve it with the context
# length raised to the agent's window, wait until it answers, pull the model.
set -euo pipefail
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) echo "unsupported $(uname -m)"; exit 1 ;; esac
home="$HOME/.cache/ci-eval-ollama/$OLLAMA_VERSION"
python="$(dirname "$EVAL_BIN")/python"
if [ ! -x "$home/bin/ollama" ]; then
  mkdir -p "$home"
  url="https://github.com/ollama/ollama/releases/download/v$OLLAMA_VERSION/ollama-linux-$arch.tar.zst"
  curl -fsSL "$url" | "$python" "$(dirname "$0")/unpack.py" "$home"
  # The release carries GPU libraries of several GB; a runner has no GPU: keep (and cache) the CPU ones.
  rm -rf "$home"/lib/ollama/cuda_* "$home"/lib/ollama/rocm* "$home"/lib/ollama/vulkan*
fi
# The window and the model slots as ci-eval will run them (its defaults, the settings file, any
# CI_EVAL_* variable): one cache slot per model slot, so that each conversation keeps its prefix.
read -r SLOTS CONTEXT_WINDOW < <("$python" - <<'PY'
import os
from pathlib import Path
from ci_eval.config import load_settings
s = load_settings({}, Path(os.environ["CONFIG"]) if os.environ.get("CONFIG") else None)
print(s.slots(), s.context_window)
PY
)
log="$RUNNER_TEMP/ollama.log"
mkdir -p "$OLLAMA_MODELS"
export OLLAMA_MODELS  # where the cached model is (the larger disk when free-disk is on)
OLLAMA_CONTEXT_LENGTH="$CONTEXT_WINDOW" OLLAMA_NUM_PARALLEL="$SLOTS" nohup "$home/bin/ollama" serve >"$log" 2>&1 &
for _ in $(seq 60); do
  if curl -fsS http://127.0.0.1:11434/api/version >/dev/null 2>&1; then break; fi
  sleep 1
done
curl -fsS http://127.0.0.1:11434/api/version || { tail -n 50 "$log"; exit 1; }
"$home/bin/ollama" pull "$MODEL"
