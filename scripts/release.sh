#!/usr/bin/env bash
# The release workflow's steps, on a vX.Y.Z tag:
#   release.sh check TAG REPO   every self-reference (uses: .../ci-eval...@ref) in .github/ and
#                               the README names REPO and the major of TAG, or it fails naming each
#   release.sh move TAG REPO    point the major tag (v1) at TAG's commit, through the REST API
set -euo pipefail
what=$1 tag=$2 repo=$3
[[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "::error::$tag is not a vX.Y.Z tag"; exit 1; }
major=${tag%%.*}
case $what in
  check)
    # ours: named ci-eval, or this repository's name (a fork or a rename)
    bad=$(grep -rnoE "uses: +[A-Za-z0-9_.-]+/(ci-eval|${repo#*/})(/[A-Za-z0-9_./-]+)?@[A-Za-z0-9_.-]+" .github README.md \
      | grep -vE "uses: +$repo(/[A-Za-z0-9_./-]+)?@$major\$" || true)
    if [ -n "$bad" ]; then
      echo "::error::self-references that do not name $repo@$major:"
      echo "$bad"
      exit 1
    fi
    echo "every self-reference names $repo@$major"
    ;;
  move)
    sha=$(gh api "repos/$repo/git/ref/tags/$tag" --jq .object.sha)
    if gh api "repos/$repo/git/ref/tags/$major" >/dev/null 2>&1; then
      gh api -X PATCH "repos/$repo/git/refs/tags/$major" -f sha="$sha" -F force=true >/dev/null
    else
      gh api -X POST "repos/$repo/git/refs" -f ref="refs/tags/$major" -f sha="$sha" >/dev/null
    fi
    echo "$major now points at $tag ($sha)"
    ;;
  *) echo "usage: release.sh check|move TAG REPO"; exit 2 ;;
esac
