#!/usr/bin/env bash
# Sets up, then runs the whole study: download -> prepare -> train x25 -> evaluate x25 -> compare -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
# Which trainings will run and about how long they take here, before the first one starts (for the
# whole study; an estimate that fails says so and the study runs anyway).
python -m tools.study_estimate || echo "reproduce: no estimate (see the line above); running dvc repro"
started=$(date +%s)
dvc repro "$@"
elapsed=$(( $(date +%s) - started ))
echo "reproduce: dvc repro took $(( elapsed / 60 )) min $(( elapsed % 60 )) s"
cat metrics/comparison.md
