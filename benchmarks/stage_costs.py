"""Wall time and peak memory of every pipeline stage, and the time of a no-op `dvc repro`.

Each stage's own command (as `dvc.yaml` resolves it) runs in a scratch copy of the project, so the
workspace and its DVC cache are untouched; training runs `--epochs` epochs (default 1, so the
whole thing takes minutes; the full study's time is `dvc repro`'s, see docs/performance.md).
Peak memory is the stage process's maximum resident set size.

Usage (from the project root, with the pipeline's outputs present, e.g. after `dvc pull`):
    python -m benchmarks.stage_costs [--epochs 1] [--output stage_costs.json]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import train_speed

COPIED = ("stages", "params.yaml", "dvc.yaml", "data", "models")


def timed(command: str, cwd: Path, environment: dict) -> dict:
    """Runs `command` in a shell; returns its wall seconds and peak resident memory in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", "-c", command], cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"`{command}` failed:\n{process.stderr.read()[-2000:]}")
    # bash execs a single command, so the usage is the stage process's own; ru_maxrss is in KiB on Linux.
    return {"seconds": round(seconds, 1), "peak_memory_mib": round(usage.ru_maxrss / 1024)}


def stage_commands(project: Path) -> dict[str, str]:
    """Every stage's resolved command, dependencies first, from DVC itself."""
    import networkx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        # DVC's graph points from a stage to the stages it depends on.
        ordered = reversed(list(networkx.topological_sort(repo.index.graph)))
        return {stage.addressing: stage.cmd for stage in ordered if stage.cmd}


def noop_repro_seconds(project: Path, repetitions: int = 3) -> float:
    """Median wall time of `dvc repro` when nothing changed (the workspace must be up to date)."""
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        # This interpreter's DVC, as the stages get this interpreter's PATH: no other install is assumed.
        finished = subprocess.run(
            [sys.executable, "-m", "dvc", "repro"], cwd=project, capture_output=True, text=True, check=True
        )
        seconds.append(time.perf_counter() - started)
        if "Running stage" in finished.stdout:
            raise RuntimeError("`dvc repro` ran a stage: the workspace is not up to date; run `dvc repro` first")
    return round(statistics.median(seconds), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per model in the scratch copy")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    arguments = parser.parse_args()
    project = Path.cwd()
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = {"noop_repro_seconds": noop_repro_seconds(project), "train_epochs": arguments.epochs, "stages": {}}
    print(f"no-op dvc repro: {result['noop_repro_seconds']} s", file=sys.stderr)
    commands = stage_commands(project)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        for name in COPIED:
            source = project / name
            if source.is_dir():
                shutil.copytree(source, copy / name, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, copy / name)
        params = yaml.safe_load((copy / "params.yaml").read_text())
        params["train"]["epochs"] = arguments.epochs
        (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for stage, command in commands.items():
            result["stages"][stage] = timed(command, copy, environment)
            print(f"  {stage:22} {result['stages'][stage]}", file=sys.stderr, flush=True)
    train_speed.report(result, arguments.output)


if __name__ == "__main__":
    main()
