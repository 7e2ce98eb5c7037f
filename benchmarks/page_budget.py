"""The pixel budget and the decoding slots of the digit page, against the code before them, side by side.

    git worktree add /tmp/before <commit before issue 21>
    python -m benchmarks.page_budget --before-root /tmp/before --models-dir DIR [--rounds 3]
                                     [--output benchmarks/results-page-budget.json]

For each round, the page of each code (before, after) is started in turn over the same models and
sent: 200 ordinary requests one at a time and 8 at a time (page_load's drawings and photo: the
budget check must cost nothing measurable), then 12 uploads at once of a 12,000 x 12,000 PNG (a
40 KB file: a bomb under Pillow's error threshold), then 12 at once of a 62-megapixel blank PNG
(under the budget, decoded). Reports each one's p50 latency and the growth of the server's peak
resident memory (VmHWM) over each burst.
"""

import argparse
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import page_server
from harness.page_server import peak_resident_bytes
from harness.ports import free_ports

ROOT = page_server.ROOT


def burst(url: str, server_pid: int, body: bytes, count: int = 12) -> dict:
    """`count` uploads of `body` at once: their statuses and how much the server's peak memory grew."""
    page_server.reset_peak_resident(server_pid)
    before = peak_resident_bytes(server_pid)
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda _: page_server.post(url + "predict", body, "image/png")[0], range(count)))
    return {
        "statuses": sorted(set(map(str, statuses))),
        "peak_growth_mb": round((peak_resident_bytes(server_pid) - before) / 1e6, 1),
    }


def measure(code_root: Path, models_dir: Path, bodies, port: int) -> dict:
    from PIL import Image

    from tools.digit_image import encoded

    bomb = encoded(Image.new("1", (12_000, 12_000), 1))
    large = encoded(Image.new("1", (7_900, 7_900), 1))
    # Run from the code root too: `python -m` looks in the working directory before PYTHONPATH.
    with page_server.running_page(code_root, dict(os.environ), models_dir, port, code_root=code_root) as (url, server):
        one = page_server.fire(url, bodies, 200, 1)
        eight = page_server.fire(url, bodies, 200, 8)
        return {
            "p50_ms_one_at_a_time": one["p50_ms"], "p50_ms_8_at_a_time": eight["p50_ms"],
            "failures": one["failures"] + eight["failures"],
            "bombs_12000x12000": burst(url, server.pid, bomb), "large_62_megapixels": burst(url, server.pid, large),
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-root", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results-page-budget.json")
    arguments = parser.parse_args()
    bodies = page_server.sample_bodies()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(arguments.rounds):
        for label, code_root in (("before", arguments.before_root.resolve()), ("after", ROOT)):
            runs[label].append(measure(code_root, arguments.models_dir.resolve(), bodies, free_ports()[0]))
            print(label, json.dumps(runs[label][-1]), flush=True)

    def median(label: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[label])

    summary = {
        key: {"before": median("before", key), "after": median("after", key),
              "ratio": round(median("after", key) / median("before", key), 3)}
        for key in ("p50_ms_one_at_a_time", "p50_ms_8_at_a_time")
    }  # fmt: skip
    results = {"cpus": os.cpu_count(), "rounds": arguments.rounds, "summary": summary, "runs": runs}
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
