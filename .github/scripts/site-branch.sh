#!/usr/bin/env bash
# The Pages site's source of truth: the `harness-site` branch (state.json, releases/, index.html).
#   site-branch.sh fetch DIR          - DIR gets the branch's files (an empty DIR when the branch is new)
#   site-branch.sh push DIR MESSAGE   - commit DIR's files as the branch's next commit and push it
# Auth: GH_TOKEN (the job's token; `contents: write` to push). Nothing else is pushed anywhere.
set -euo pipefail
cmd=$1 dir=$2
branch=${SITE_BRANCH:-harness-site}
remote="https://x-access-token:${GH_TOKEN}@${GITHUB_SERVER_URL#https://}/${GITHUB_REPOSITORY}.git"
mkdir -p "$dir"
cd "$dir"
case "$cmd" in
  fetch)
    git init -q -b "$branch" .
    if git fetch -q --depth 1 "$remote" "$branch" 2>/dev/null; then
      git checkout -q -B "$branch" FETCH_HEAD
    else
      echo "site-branch: no $branch branch yet: starting empty"
    fi
    ;;
  push)
    git add -A
    git -c user.name="github-actions[bot]" \
        -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
        commit -q -m "$3" || { echo "site-branch: nothing changed"; exit 0; }
    git push -q "$remote" "HEAD:refs/heads/$branch"
    ;;
  *) echo "usage: site-branch.sh fetch|push DIR [MESSAGE]" >&2; exit 2 ;;
esac
