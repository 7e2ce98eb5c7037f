#!/usr/bin/env bash
# Sets up, then runs the whole study: download -> prepare -> train x5 -> evaluate x5 -> compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
started=$(date +%s)
dvc repro "$@"
echo "reproduce: dvc repro took $(( $(date +%s) - started )) s"
cat metrics/comparison.md
