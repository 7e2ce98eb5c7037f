"""Writes the HTML template that makes `dvc plots show` and `dvc plots diff` render with no network.

    npm ci && python -m tools.offline_plots      (scripts/setup.sh runs both)

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline every Vega chart
is blank. This writes `.dvc/offline-plots.html`, which scripts/setup.sh then names as `plots.html_template`
in `.dvc/config.local`:
DVC's page with the three libraries, at the versions package-lock.json pins, inlined. Inlined, not
linked, so the page also works where `-o` puts it and when it is copied or attached elsewhere.
The template has no `{scripts}` placeholder, which is where DVC would add its CDN links.
"""

import argparse
import json
from pathlib import Path

from stages import artifacts, cli
from stages.errors import SourceError

# Vega-Embed calls Vega and Vega-Lite, so they load first.
LIBRARIES = (
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
)
TEMPLATE = Path(".dvc/offline-plots.html")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots: MNIST CNN study</title>
<!-- LIBRARIES -->
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def library_script(node_modules: Path, package: str, build: str) -> str:
    """One library inlined as a <script>, headed by its name, version and licence.

    Raises:
        SourceError: the package is not installed (npm ci not run) or its build is missing.
    """
    manifest, script = node_modules / package / "package.json", node_modules / package / build
    if not manifest.is_file() or not script.is_file():
        raise SourceError(f"{script}: not found; expected the package from package-lock.json (run `npm ci`)")
    about = json.loads(manifest.read_text(encoding="utf-8"))
    code = script.read_text(encoding="utf-8")
    if "</script" in code.lower():
        raise SourceError(f"{script}: contains '</script', which would end the inlined script early")
    return f"<script>/* {package} {about['version']}, {about['license']} */\n{code}\n</script>"


def page(node_modules: Path) -> str:
    """DVC's page template with the libraries inlined."""
    scripts = "\n".join(library_script(node_modules, package, build) for package, build in LIBRARIES)
    return PAGE.replace("<!-- LIBRARIES -->", scripts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path, default=Path("node_modules"))
    parser.add_argument("--output", type=Path, default=TEMPLATE)
    arguments = parser.parse_args()
    artifacts.write_text_atomic(arguments.output, page(arguments.node_modules))
    print(f"offline_plots: wrote {arguments.output} ({arguments.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    cli.run("offline_plots", main)
