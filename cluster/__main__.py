"""python -m cluster repro [TARGETS ...] [-S key=value ...] [--address HOST:PORT] [--cpus-per-task N] [OPTIONS]

What `dvc repro` would run, spread over a Ray cluster: trainings and evaluations as Ray tasks,
the cheap stages here. With -S (DVC's syntax, grids too: -S 'arch.kernel=2,3,5') each point is
saved as a DVC experiment. Without --address a Ray is started on this machine (loopback only, no
dashboard). Ray has no authentication: a cluster belongs on a private network (docs/scaling.md).
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from cluster import coordinator, experiments, grid
from stages import cli
from stages.errors import ParamsError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.splitlines()[2])
    commands = parser.add_subparsers(dest="command", required=True)
    repro = commands.add_parser("repro", help="what `dvc repro` would run, spread over a Ray cluster")
    repro.add_argument("targets", nargs="*", help="stages, as for dvc repro (default: all)")
    repro.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    repro.add_argument("--address", help="HOST:PORT of a Ray cluster's head (default: start Ray here)")
    repro.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs Ray reserves for each task")
    repro.add_argument(
        "--gpus-per-task", type=float, default=0,
        help="GPUs Ray reserves for each task (default 0; untested here, docs/scaling.md)",
    )  # fmt: skip
    repro.add_argument(
        "--threads", type=int, default=os.cpu_count(),
        help="TensorFlow threads per task (default: this machine's cores, so results match a local dvc repro here)",
    )  # fmt: skip
    repro.add_argument("--summary", type=Path, help="also write the per-stage summary here (JSON)")
    arguments = parser.parse_args()
    if arguments.cpus_per_task <= 0:
        raise ParamsError(f"--cpus-per-task: got {arguments.cpus_per_task}; expected a positive number")
    gpus = arguments.gpus_per_task
    # Ray takes a fraction of one GPU (tasks share it) or a whole number of them.
    if not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and not gpus.is_integer()):
        raise ParamsError(f"--gpus-per-task: got {gpus:g}; expected 0, a fraction up to 1, or a whole number")
    if arguments.threads < 1:
        raise ParamsError(f"--threads: got {arguments.threads}; expected a positive integer")
    project = Path.cwd()
    points = grid.parse_overrides(arguments.overrides) if arguments.overrides else [{}]
    if arguments.overrides:
        grid.require_clean_workspace(project)
    summary: list[dict] = []
    began = time.monotonic()
    with coordinator.connected(project, arguments.address) as ray:
        coordinator.require_gpus(ray, arguments.gpus_per_task)
        experiments.run_points(
            project, points,
            lambda: coordinator.reproduce(project, arguments.targets, ray, arguments.cpus_per_task,
                                          arguments.threads, summary, arguments.gpus_per_task),
        )  # fmt: skip
    for row in summary:
        print(f"  {row['stage']:<28} {row['node'][:12]:<12} {row['seconds']:8.1f} s")
    print(f"cluster: {len(summary)} stages in {time.monotonic() - began:.0f} s")
    if arguments.summary:
        arguments.summary.write_text(json.dumps(summary, indent=2))


def main_interruptible() -> None:
    try:
        main()
    except KeyboardInterrupt:
        print("cluster: interrupted; the running tasks were cancelled and the stages finished before stay in "
              "dvc.lock: run the same command to go on", file=sys.stderr)  # fmt: skip
        sys.exit(cli.INTERRUPTED_EXIT_STATUS)


if __name__ == "__main__":
    cli.run("cluster", main_interruptible)
