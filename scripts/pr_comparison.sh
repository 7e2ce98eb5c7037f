#!/usr/bin/env bash
# What a pull request changes in the results and the parameters, as Markdown for the CI job summary:
# DVC compares the git-tracked metrics and params.yaml of the base commit with the workspace's, so
# no model, data or DVC cache is needed.
#     bash scripts/pr_comparison.sh origin/main
set -euo pipefail
base="${1:?usage: bash scripts/pr_comparison.sh BASE-COMMIT}"
dvc=$(command -v dvc || echo .venv/bin/dvc)
git rev-parse --verify --quiet "$base^{commit}" >/dev/null || {
  echo "pr_comparison: base commit '$base' not found; expected a commit of this repository (fetch it first)" >&2
  exit 1
}
for what in metrics params; do
  echo "### ${what^} against $(git rev-parse --short "$base")"
  echo
  table=$("$dvc" "$what" diff "$base" --md)
  echo "${table:-No change.}"
  echo
done
