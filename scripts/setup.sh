#!/usr/bin/env bash
# Creates .venv with the exactly pinned dependencies. Safe to run again: it reinstalls only
# when requirements.txt changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required, found $("$python" --version 2>&1) at $(command -v "$python")" >&2
  exit 1
fi
command -v npm >/dev/null 2>&1 || echo "setup: warning: npm not found; the default data source (npm) needs it" >&2

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.requirements.sha256
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$wanted" > "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python --version), dvc $(.venv/bin/dvc --version))"
