#!/usr/bin/env bash
# Prints the id of the newest unexpired artifact named $ARTIFACT of run $1 (nothing when none):
# each attempt of a run that re-ran its aggregate keeps a report of that name, and neither
# download-artifact by name (the largest id) nor `gh run download --name` (the first listed)
# takes the newest.
set -euo pipefail
gh api "repos/$REPO/actions/runs/$1/artifacts?name=$ARTIFACT&per_page=100" \
  | jq -r '[.artifacts[] | select(.expired | not)] | sort_by(.created_at) | last | .id // empty'
