#!/usr/bin/env bash
# Proposes the lock the nightly resolved back to the repository, so that the next release
# of the binary ships it (embedded beside the recipe) and users need not resolve it on
# their first build. Called by the propose-lock job of .github/workflows/nightly.yml, after
# the build job's artifact (recipes/RECIPE.lock) was put into this checkout.
#
# Usage: ci/nightly-propose-lock.sh RECIPE
#   Nothing changed: says so, exit 0. Else: commits recipes/RECIPE.lock on the branch
#   nightly/lock-RECIPE (forced: one open proposal per recipe, always the latest lock),
#   pushes it, and opens a pull request unless one is open for that branch.
# Environment: GH_TOKEN (the workflow's token, contents: write + pull-requests: write),
#   GITHUB_REPOSITORY; RDNA1_PROPOSE_DRY_RUN=1 prints what it would do and pushes nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { local code=$1; shift; printf 'propose-lock: error: %s\n' "$*" >&2; exit "$code"; }

[[ $# -eq 1 ]] || fail 2 "usage: $0 RECIPE"
recipe=$1
[[ $recipe =~ ^[a-z0-9][a-z0-9._-]*$ ]] || fail 2 "'$recipe' is not a recipe name"
lock=recipes/$recipe.lock
[[ -f $lock ]] || fail 2 "$lock is not here: did the build job's artifact carry it?"

if git diff --quiet -- "$lock" && ! git ls-files --others --exclude-standard -- "$lock" | grep -q .; then
    printf 'propose-lock: %s is unchanged: nothing to propose\n' "$lock" >&2
    exit 0
fi
branch=nightly/lock-$recipe
title="Lock $recipe: the files and hashes the nightly resolved and verified"
body="The nightly resolved \`$lock\` from the recipe's index and verified it with \`rdna1-images lock $recipe --verify\`; the build that followed used it with \`--locked\`. Merging it makes the next release ship the lock, so a first \`build $recipe\` resolves nothing."
if [[ ${RDNA1_PROPOSE_DRY_RUN:-0} == 1 ]]; then
    printf 'propose-lock: would commit %s on %s and open "%s"\n' "$lock" "$branch" "$title" >&2
    git --no-pager diff --stat -- "$lock" >&2 || true
    exit 0
fi
[[ -n ${GH_TOKEN:-} ]] || fail 3 "GH_TOKEN is not set"
git config user.name "github-actions[bot]"
git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
git checkout -B "$branch"
git add -- "$lock"
git commit -m "$title"
# The checkout kept no credentials (persist-credentials: false): the token goes to this one
# push as the header actions/checkout would set, never into .git/config or a URL.
server=${GITHUB_SERVER_URL:-https://github.com}
auth=$(printf 'x-access-token:%s' "$GH_TOKEN" | base64 -w0)
git -c "http.$server/.extraheader=AUTHORIZATION: basic $auth" push --force origin "$branch"
if [[ -z $(gh pr list --head "$branch" --state open --json number --jq '.[].number') ]]; then
    gh pr create --head "$branch" --title "$title" --body "$body"
else
    printf 'propose-lock: the pull request for %s is open; its branch now has the latest lock\n' "$branch" >&2
fi
