"""Latency of the digit page's server under load: 200 drawings and photos, 8 at a time, on loopback.

    python -m benchmarks.page_load [--models-dir models] [--requests 200] [--concurrency 8]
                                   [--output benchmarks/results-page-load.json]

Starts `python -m tools.digit_page serve` on a free loopback port over the trained models, then
sends the same requests twice: one at a time (the baseline: one request's own cost) and
`--concurrency` at a time (what several users at once see). Reports p50 and p95 latency and
throughput for both, their ratios, and every request that did not get a 200.
"""

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from harness.page_server import fire, running_page, sample_bodies
from harness.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results-page-load.json")
    arguments = parser.parse_args()
    bodies = sample_bodies()
    with running_page(ROOT, dict(os.environ), arguments.models_dir.resolve(), free_ports()[0]) as (url, _):
        with urllib.request.urlopen(url + "models") as response:
            models = json.loads(response.read())["loaded"]
        baseline = fire(url, bodies, arguments.requests, 1)
        loaded = fire(url, bodies, arguments.requests, arguments.concurrency)
    results = {
        "models": models,
        "cpus": os.cpu_count(),
        "one_at_a_time": baseline,
        "concurrent": loaded,
        "p50_ratio": round(loaded["p50_ms"] / baseline["p50_ms"], 2),
        "throughput_ratio": round(loaded["requests_per_second"] / baseline["requests_per_second"], 2),
    }
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
