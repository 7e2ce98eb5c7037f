#!/usr/bin/env bash
# Sets up, then runs the test suite (unit tests and the tiny end-to-end pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
