#!/usr/bin/env bash
# The aggregate action's comment step: one comment per pull request and evaluation (found by a
# hidden marker), updated in place on every run instead of piling up.
set -euo pipefail
marker="<!-- ci-eval:${PREFIX:-ci-eval} -->"
body="$marker
$(cat "$RUNNER_TEMP/ci-eval-report/comment.md")"
existing=$(gh api --paginate "repos/$REPO/issues/$PR/comments?per_page=100" \
  | jq -r --arg marker "$marker" '.[] | select(.body | startswith($marker)) | .id' | head -n 1)
if [ -n "$existing" ]; then
  jq -n --arg body "$body" '{body: $body}' | gh api -X PATCH "repos/$REPO/issues/comments/$existing" --input - >/dev/null
  echo "updated comment $existing on #$PR"
else
  jq -n --arg body "$body" '{body: $body}' | gh api -X POST "repos/$REPO/issues/$PR/comments" --input - >/dev/null
  echo "commented on #$PR"
fi
