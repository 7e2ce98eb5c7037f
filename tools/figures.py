"""Renders chosen `dvc plots` charts to PNG files, offline, for the README.

    python -m tools.figures --output-dir docs/figures plots/report/accuracy_vs_parameters.csv \
        plots/report/validation_accuracy.csv

Runs `dvc plots show` on the targets (the offline page template, see tools/offline_plots.py),
opens the page in headless Chromium (tools/browser.py) and saves each chart as
<output-dir>/<file name without extension>.png: the figure a reader sees without installing anything.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

from stages import artifacts, cli
from stages.errors import DataError, SourceError
from tools import browser


def render(targets: list[str], output_dir: Path) -> list[Path]:
    """Each target's chart as a PNG in `output_dir`; returns the files written."""
    with tempfile.TemporaryDirectory() as scratch:
        command = ["dvc", "plots", "show", "-o", scratch, *targets]
        shown = subprocess.run(command, capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            raise SourceError(f"{' '.join(command)}: exited with {shown.returncode}: {shown.stderr.strip()[-300:]}")
        with browser.offline_page(Path(scratch) / "index.html") as opened:
            opened.wait_for_charts(len(targets))
            if opened.external_requests or opened.errors:
                raise DataError(f"plots page: needed {opened.external_requests or opened.errors}; expected offline")
            written = []
            for target in targets:
                element_id = target.replace("/", "_").replace(".", "_")
                chart = opened.page.locator(f"div[id='{element_id}']")
                path = output_dir / f"{Path(target).stem}.png"
                artifacts.write_bytes_atomic(path, chart.screenshot())
                written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("targets", nargs="+", help="plot paths as dvc.yaml declares them")
    arguments = parser.parse_args()
    for path in render(arguments.targets, arguments.output_dir):
        print(f"figures: wrote {path}")


if __name__ == "__main__":
    cli.run("figures", main)
