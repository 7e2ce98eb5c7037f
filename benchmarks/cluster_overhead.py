"""What Ray and the DVC remote add per stage: the same small study by `dvc repro` and by the cluster package.

    python -m benchmarks.cluster_overhead [--limit 3000] [--epochs 2] [--output benchmarks/results-cluster.json]

Two clones of this commit with the same small configuration (two models, two seeds): one runs
plain `dvc repro`, the other `python -m cluster repro` on a two-node Ray cluster on loopback
(one CPU each, harness/ray_cluster.py) with a local-directory remote. Reports both wall times, their
ratio, each remote stage's time inside its task against the same stage's local time, and whether
the two `dvc.lock` files are equal.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cluster import plan as cluster_plan
from harness.ray_cluster import RayCluster
from harness.tiny_project import make_tiny_project, set_params

ROOT = Path(__file__).resolve().parents[1]


def timed_repro(project: Path, environment: dict) -> tuple[float, dict[str, float]]:
    """`dvc repro` stage by stage (in DAG order), timing each."""
    stages = [stage.name for stage in cluster_plan.plan(project, [])]  # what dvc repro runs, in its order
    seconds = {}
    began = time.monotonic()
    for stage in stages:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "dvc", "repro", "-s", stage], cwd=project, env=environment,
                       capture_output=True, check=True)  # fmt: skip
        seconds[stage] = round(time.monotonic() - started, 1)
    return time.monotonic() - began, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results-cluster.json")
    arguments = parser.parse_args()
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    settings = {"models": ["conv3_pool", "arch"], "train.seeds": [1, 2], "data.limit": arguments.limit,
                "train.epochs": arguments.epochs}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        local = make_tiny_project(Path(scratch) / "local", environment)
        set_params(local / "params.yaml", settings)
        local_seconds, local_stages = timed_repro(local, environment)

        distributed = make_tiny_project(Path(scratch) / "cluster", environment)
        set_params(distributed / "params.yaml", settings)
        subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "storage", str(Path(scratch) / "remote")],
                       cwd=distributed, env=environment, check=True)  # fmt: skip
        summary_path = Path(scratch) / "summary.json"
        with RayCluster(environment) as cluster:
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "cluster", "repro", "--address", cluster.address,
                            "--summary", str(summary_path)], cwd=distributed, env=environment, check=True,
                           capture_output=True)  # fmt: skip
            cluster_seconds = time.monotonic() - started
        summary = json.loads(summary_path.read_text())
        same_lock = yaml.safe_load((local / "dvc.lock").read_text()) == yaml.safe_load(
            (distributed / "dvc.lock").read_text()
        )
    remote = [row for row in summary if row["node"] != "coordinator"]
    result = {
        "configuration": settings,
        "local_dvc_repro_seconds": round(local_seconds, 1),
        "cluster_two_nodes_seconds": round(cluster_seconds, 1),
        "ratio_cluster_over_local": round(cluster_seconds / local_seconds, 2),
        "same_dvc_lock": same_lock,
        "stages": {
            row["stage"]: {
                "local_seconds": local_stages.get(row["stage"]),
                "task_seconds": row["seconds"],
                "node": row["node"][:8],
            }  # fmt: skip
            for row in summary
        },
        "mean_task_overhead_seconds": round(
            sum(row["seconds"] - local_stages.get(row["stage"], 0) for row in remote) / len(remote), 1
        ),
    }
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
