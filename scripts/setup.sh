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
# Vega, Vega-Lite and Vega-Embed at the versions package-lock.json pins, inlined into the page
# template `dvc plots show` uses, so plots render offline. The template is named in .dvc/config.local
# (not committed) only once it exists: a clone without this setup gets DVC's own page, which loads
# the libraries from the network, instead of an error about a missing template.
if command -v npm >/dev/null 2>&1; then
  [ "$(cat node_modules/.package-lock.sha256 2>/dev/null)" = "$(sha256sum package-lock.json | cut -d' ' -f1)" ] || {
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    sha256sum package-lock.json | cut -d' ' -f1 > node_modules/.package-lock.sha256
  }
  .venv/bin/python -m tools.offline_plots
  .venv/bin/dvc config --local plots.html_template offline-plots.html
fi
echo "setup: .venv ready ($(.venv/bin/python --version), dvc $(.venv/bin/dvc --version))"
