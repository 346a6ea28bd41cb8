#!/usr/bin/env bash
# The release workflow's steps, on a vX.Y.Z tag:
#   release.sh check TAG REPO     every self-reference (uses: .../ci-eval...@ref) in .github/, the
#                                 README and docs/ names org/ci-eval (the placeholder) or REPO, at
#                                 the major of TAG, or it fails naming each
#   release.sh publish TAG REPO   write REPO over the placeholder (the nested references of the
#                                 workflow and the README's examples must name a repository that
#                                 exists), commit that on TAG's commit, and point TAG and its major
#                                 (v2) at the new commit. Each older major kept in compat/vN gets a
#                                 commit on top whose actions and workflow are compat/vN's (its old
#                                 inputs, forwarded to this release), and vN points there. Pushes to
#                                 $RELEASE_REMOTE (default: REPO on github.com with $GH_TOKEN).
set -euo pipefail
what=$1 tag=$2 repo=$3
[[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "::error::$tag is not a vX.Y.Z tag"; exit 1; }
major=${tag%%.*}
placeholder="org/ci-eval"
release_subject="Release $tag: the references name $repo"
# Publishing with a token that may start workflows moves the tag, and the moved tag starts this
# workflow again: its commit is then the release commit itself, and nothing is left to do.
if [ "$(git log -1 --format=%s "$tag^{commit}" 2>/dev/null || true)" = "$release_subject" ]; then
  echo "$tag is already the release commit: nothing to do"
  exit 0
fi
references() { grep -rnoE "uses: +[A-Za-z0-9_.-]+/(ci-eval|${repo#*/})(/[A-Za-z0-9_./-]+)?@[A-Za-z0-9_.-]+" "${@:-.github}" README.md docs; }
name_repo() { [ "$repo" = "$placeholder" ] || references "$@" | cut -d: -f1 | sort -u | xargs -r sed -i -E "s#(uses: +)$placeholder([/@])#\1$repo\2#g"; }
bot=(-c user.name="github-actions[bot]" -c user.email="41898282+github-actions[bot]@users.noreply.github.com")
case $what in
  check)
    bad=$(references | grep -vE "uses: +($placeholder|$repo)(/[A-Za-z0-9_./-]+)?@$major\$" || true)
    if [ -n "$bad" ]; then
      echo "::error::self-references that name neither $placeholder nor $repo at $major:"
      echo "$bad"
      exit 1
    fi
    echo "every self-reference names $placeholder or $repo at $major"
    ;;
  publish)
    # The tag's commit, peeled: an annotated tag's own object is not a commit a ref may name.
    git checkout --quiet --detach "$tag^{commit}"
    name_repo .github
    if ! git diff --quiet; then
      git "${bot[@]}" commit --quiet -am "$release_subject"
    fi
    sha=$(git rev-parse HEAD)
    refs=("$sha:refs/tags/$tag" "$sha:refs/tags/$major")
    for old in compat/v*/; do
      [ -d "$old" ] || continue
      old_major=$(basename "$old")
      (cd "$old" && find . -type f) | while read -r file; do mkdir -p "$(dirname "$file")"; cp "$old/$file" "$file"; done
      name_repo .github action.yml ./*/action.yml
      git add -A
      git "${bot[@]}" commit --quiet -m "Release $tag as $old_major: $old_major's inputs, forwarded to $tag"
      refs+=("$(git rev-parse HEAD):refs/tags/$old_major")
      git checkout --quiet --detach "$sha"
    done
    remote=${RELEASE_REMOTE:-https://x-access-token:${GH_TOKEN}@github.com/$repo.git}
    if ! out=$(git push --force "$remote" "${refs[@]}" 2>&1); then
      echo "${out//${GH_TOKEN:-no-token}/***}"
      echo "::error::could not move $tag and $major to $sha. The release changes .github/workflows/, which GITHUB_TOKEN may never push: add a repository secret CI_EVAL_RELEASE_TOKEN, a fine-grained token of this repository with Contents and Workflows read and write (or a GitHub App's token with those permissions), and re-run the release."
      exit 1
    fi
    echo "$tag and $major now point at $sha"
    for ref in "${refs[@]:2}"; do echo "${ref##*/} now points at ${ref%%:*}"; done
    ;;
  *) echo "usage: release.sh check|publish TAG REPO"; exit 2 ;;
esac
