#!/usr/bin/env bash
# Sets up, then runs the test suite (unit tests and the tiny end-to-end pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers, each taking whole test files (module fixtures such as the digit page's server are made
# once): most of the suite's time is single-threaded (interpreter and TensorFlow start-up, DVC), so
# on 2 cores it takes 9 minutes instead of 14.5. `bash scripts/test.sh -n 0` runs it in one process.
.venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
