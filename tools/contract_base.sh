#!/usr/bin/env bash
# The commit whose protos the current ones must stay compatible with (`make breaking`): the
# last landed contract. With uncommitted changes under proto/ that is HEAD (the change under
# test is the working tree); on a clean tree, as in CI on a fresh clone of main, it is HEAD~1
# (the change under test is the last commit). Prints nothing when there is no such commit.
set -euo pipefail
cd "$(dirname "$0")/.."
git rev-parse --git-dir >/dev/null 2>&1 || exit 0
if [ -n "$(git status --porcelain -- proto)" ]; then ref=HEAD; else ref=HEAD~1; fi
git rev-parse --verify --quiet "${ref}^{commit}" || true
