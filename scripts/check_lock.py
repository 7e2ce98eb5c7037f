"""Fails when the committed dvc.lock no longer matches the committed code, dvc.yaml and params.yaml.

Meant for a fresh clone with no data and no DVC cache (CI): it asks DVC (`dvc status --json`)
what changed and ignores what is only missing there (data and models not pulled), so what is left
is a stage whose code, command or declared parameters changed without the pipeline being rerun,
or a committed result (metrics, plots) that differs from the hash dvc.lock records. It also checks
that every stage's locked input hash equals the locked output hash of the stage producing it, and
that dvc.lock holds no entry for a stage dvc.yaml no longer defines (DVC never removes those).

    python scripts/check_lock.py        # exit 0: consistent; exit 1: names each stale stage and why
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml

# What a clone without data or cache reports for outputs and data it simply does not have.
ABSENT = {"deleted", "not in cache"}


def is_produced(path: str, produced_paths: set[str]) -> bool:
    """Whether a stage makes `path`, or everything in it (a dependency on a directory of outputs, like `models`)."""
    return path in produced_paths or any(produced.startswith(path.rstrip("/") + "/") for produced in produced_paths)


def outputs_missing_under(path: str, produced_paths: set[str]) -> bool:
    """Whether `path` is a directory of stage outputs of which some are not in this workspace (not pulled)."""
    inside = [produced for produced in produced_paths if produced.startswith(path.rstrip("/") + "/")]
    return bool(inside) and not all(Path(produced).exists() for produced in inside)


def stale_reasons(status: dict, produced_paths: set[str]) -> dict[str, list[str]]:
    """Turns `dvc status --json` into {stage: [why it is stale]}, leaving out absent data.

    Args:
        status: the parsed output of `dvc status --json`.
        produced_paths: paths that are outputs of some stage (their absence is not staleness).
    """
    reasons: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):
                reasons.setdefault(stage, []).append(entry)  # e.g. "changed command"
                continue
            for kind, changes in entry.items():
                for path, change in changes.items():
                    if isinstance(change, dict):  # params.yaml: {key: modified | new | deleted}
                        reasons.setdefault(stage, []).extend(
                            f"parameter {key} {state}" for key, state in sorted(change.items())
                        )
                    elif change in ABSENT and (kind == "changed outs" or is_produced(path, produced_paths)):
                        continue
                    elif (
                        kind == "changed deps" and change == "modified" and outputs_missing_under(path, produced_paths)
                    ):
                        continue  # a directory of outputs not pulled, holding only DVC's .gitignore files
                    else:
                        reasons.setdefault(stage, []).append(f"{kind.removeprefix('changed ')[:-1]} {path} {change}")
    return reasons


def broken_links(lock: dict) -> dict[str, list[str]]:
    """{stage: [why]} for locked inputs whose hash differs from the locked output that produces them."""
    produced = {}
    for stage, entry in lock.get("stages", {}).items():
        for output in entry.get("outs", []):
            produced[output["path"]] = (stage, output.get("md5"))
    reasons: dict[str, list[str]] = {}
    for stage, entry in lock.get("stages", {}).items():
        for dependency in entry.get("deps", []):
            producer = produced.get(dependency["path"])
            if producer and producer[1] != dependency.get("md5"):
                reasons.setdefault(stage, []).append(
                    f"dep {dependency['path']} locked as {dependency.get('md5')}, but {producer[0]} locked its "
                    f"output as {producer[1]}: rerun `dvc repro {stage}`"
                )
    return reasons


def orphans(lock: dict, stage_names: set[str]) -> dict[str, list[str]]:
    """{stage: [why]} for dvc.lock entries of stages that dvc.yaml no longer defines."""
    return {
        stage: ["in dvc.lock but not a stage of dvc.yaml (renamed or removed): delete its entry from dvc.lock"]
        for stage in lock.get("stages", {})
        if stage not in stage_names
    }


def dvc(*arguments: str) -> subprocess.CompletedProcess:
    """DVC from this interpreter's environment, whatever is on PATH."""
    return subprocess.run([sys.executable, "-m", "dvc", *arguments], capture_output=True, text=True, check=False)


def main() -> int:
    lock_path = Path("dvc.lock")
    if not lock_path.exists():
        print("check_lock: dvc.lock is missing; run `dvc repro` and commit it", file=sys.stderr)
        return 1
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    produced_paths = {output["path"] for entry in lock.get("stages", {}).values() for output in entry.get("outs", [])}
    status, stage_list = dvc("status", "--json"), dvc("stage", "list", "--name-only")
    for command, completed in (("dvc status --json", status), ("dvc stage list --name-only", stage_list)):
        if completed.returncode != 0:
            print(f"check_lock: `{command}` failed: {completed.stderr.strip()}", file=sys.stderr)
            return 1
    reasons = stale_reasons(json.loads(status.stdout or "{}"), produced_paths)
    for stage, why in [*broken_links(lock).items(), *orphans(lock, set(stage_list.stdout.split())).items()]:
        reasons.setdefault(stage, []).extend(why)
    if reasons:
        print(
            f"check_lock: dvc.lock is stale for {len(reasons)} stage(s); rerun `dvc repro` and commit dvc.lock "
            "and the results:",
            file=sys.stderr,
        )
        for stage, why in reasons.items():
            print(f"  {stage}: {'; '.join(why)}", file=sys.stderr)
        return 1
    print(f"check_lock: dvc.lock matches the code, dvc.yaml and params.yaml for all {len(lock['stages'])} stages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
