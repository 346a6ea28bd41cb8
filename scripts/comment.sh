#!/usr/bin/env bash
# The aggregate action's comment step: one comment per pull request and evaluation (found by a
# hidden marker), updated in place on every run instead of piling up. Only a comment that the
# token's own user wrote is ours to update: anyone can post the marker, and a fake verdict under
# it must not be what the pull request shows. When the update fails, a new comment is posted.
set -euo pipefail
if [ -n "${HEAD_REPO:-}" ] && [ "$HEAD_REPO" != "$REPO" ]; then
  # A fork's pull request runs with a read-only token: no comment; its checks carry the summary.
  echo "::notice title=ci-eval::a pull request from a fork gets no comment (its token is read-only): the verdict is in this run's job summary, ${GITHUB_SERVER_URL:-https://github.com}/$REPO/actions/runs/${GITHUB_RUN_ID:-}"
  exit 0
fi
marker="<!-- ci-eval:${PREFIX:-ci-eval} -->"
body="$marker
$(cat "$RUNNER_TEMP/ci-eval-report/comment.md")"
# A personal or fine-grained token can name its user; GITHUB_TOKEN cannot (GET /user is refused)
# and writes as github-actions[bot].
me=$(gh api user --jq .login 2>/dev/null || true)
me=${me:-github-actions[bot]}
existing=$(gh api --paginate "repos/$REPO/issues/$PR/comments?per_page=100" \
  | jq -r --arg marker "$marker" --arg me "$me" \
      '.[] | select(.user.login == $me and (.body | startswith($marker))) | .id' | tail -n 1)
payload=$(jq -n --arg body "$body" '{body: $body}')
if [ -n "$existing" ] && gh api -X PATCH "repos/$REPO/issues/comments/$existing" --input - <<<"$payload" >/dev/null; then
  echo "updated comment $existing on #$PR"
else
  gh api -X POST "repos/$REPO/issues/$PR/comments" --input - <<<"$payload" >/dev/null
  echo "commented on #$PR"
fi
