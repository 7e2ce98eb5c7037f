"""Renders chosen `dvc plots` charts, or the digit page with a drawn 7, to PNG files, offline, for the README.

    python -m tools.figures --output-dir docs/figures plots/report/accuracy_vs_parameters.csv \
        plots/report/validation_accuracy.csv
    python -m tools.figures --output-dir docs/figures --digit-page http://127.0.0.1:8000/

Runs `dvc plots show` on the targets (the offline page template, see tools/offline_plots.py),
opens the page in headless Chromium (tools/browser.py) and saves each chart as
<output-dir>/<file name without extension>.png: the figure a reader sees without installing anything.
With --digit-page, draws a 7 on the running page (`python -m tools.digit_page serve`) and saves
the answered page as <output-dir>/digit_page.png.
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


# A 7's strokes on the digit page's pad, in 0-1 of its width and height.
DRAWN_SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]


def digit_page(url: str, output_dir: Path) -> Path:
    """The digit page at `url` after a drawn 7 is read, as <output_dir>/digit_page.png."""
    with browser.offline_page(url, width=1000) as opened:
        opened.draw("#pad", DRAWN_SEVEN)
        opened.page.click("#read")
        opened.page.wait_for_function("document.body.dataset.state === 'answered'", timeout=30_000)
        if opened.external_requests or opened.errors:
            raise DataError(f"digit page: needed {opened.external_requests or opened.errors}; expected offline")
        path = output_dir / "digit_page.png"
        artifacts.write_bytes_atomic(path, opened.page.locator("body").screenshot())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--digit-page", metavar="URL", help="the running digit page to draw a 7 on")
    parser.add_argument("targets", nargs="*", help="plot paths as dvc.yaml declares them")
    arguments = parser.parse_args()
    if not arguments.targets and not arguments.digit_page:
        parser.error("give plot paths, --digit-page URL, or both")
    written = render(arguments.targets, arguments.output_dir) if arguments.targets else []
    if arguments.digit_page:
        written.append(digit_page(arguments.digit_page, arguments.output_dir))
    for path in written:
        print(f"figures: wrote {path}")


if __name__ == "__main__":
    cli.run("figures", main)
