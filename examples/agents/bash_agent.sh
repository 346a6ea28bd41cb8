#!/usr/bin/env bash
# A whole agent for ci-eval's command seam, in bash with curl and jq: ask the model for one
# command, run it in the sandbox through $CI_EVAL_EXEC, show it the output, until it submits.
#   ci-eval shard --index 0 --of 1 --agent-command 'bash "$CI_EVAL_CALLER_DIR/examples/agents/bash_agent.sh"'
set -euo pipefail
system='Fix the issue in the repository. Reply with exactly one ```bash block holding one command.
When the fix is done, run: echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT'
messages=$(jq --arg s "$system" '[{role: "system", content: $s}, {role: "user", content: .problem_statement}]' \
  "$CI_EVAL_TASK")
while :; do  # a call past a limit is refused (HTTP 400): curl fails, and so does the agent
  reply=$(jq -n --arg m "$CI_EVAL_MODEL" --argjson msgs "$messages" '{model: $m, messages: $msgs}' |
    curl -sSf "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" \
      -H 'Content-Type: application/json' -d @- | jq -r '.choices[0].message.content')
  command=$(printf '%s\n' "$reply" | awk '/^```bash/ { inside = 1; next } /^```/ { if (inside) exit } inside')
  status=0 && output=$("$CI_EVAL_EXEC" "$command" 2>&1) || status=$?
  case "$output" in COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT*) exit 0 ;; esac
  messages=$(jq --arg r "$reply" --arg o "exit status $status"$'\n'"$output" \
    '. + [{role: "assistant", content: $r}, {role: "user", content: $o}]' <<<"$messages")
done
