"""The invariant: a stage's result is recorded only with the inputs that made it.

A worker returns its `dvc.lock` entry: the command, every dependency's hash, every declared
parameter's value, and the outputs' hashes. Before anything of it is recorded, the coordinator
computes what its own workspace would record for that stage now and compares the two; the first
difference is the one-line refusal. Pure functions over the two entries (plain dicts).
"""

import json


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """Nested dicts and lists as dotted keys: {'arch': {'layers': [{'filters': 32}]}} has 'arch.layers[0].filters'."""
    if isinstance(value, dict):
        if not value and prefix:
            return {prefix: value}
        flat = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for index, inner in enumerate(value):
            flat.update(_flatten(inner, f"{prefix}[{index}]"))
        return flat or {prefix: value}
    return {prefix: value}


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _dependency_hashes(entry: dict) -> dict[str, object]:
    return {dependency["path"]: dependency.get("md5") for dependency in entry.get("deps") or []}


def first_difference(worker: dict, ours: dict) -> str | None:
    """What first differs between the inputs in two lock entries (None: the same command, dependencies, params).

    Args:
        worker: the entry the worker recorded when it ran the stage.
        ours: the entry this workspace would record for the stage now (its outputs are not compared).
    """
    if worker.get("cmd") != ours.get("cmd"):
        return f"command: the worker ran {_short(worker.get('cmd'))}, this workspace has {_short(ours.get('cmd'))}"
    worker_hashes, our_hashes = _dependency_hashes(worker), _dependency_hashes(ours)
    for path in sorted(set(worker_hashes) | set(our_hashes)):
        if worker_hashes.get(path) != our_hashes.get(path):
            return (
                f"dependency {path}: the worker's md5 {worker_hashes.get(path) or 'none'}, "
                f"this workspace's {our_hashes.get(path) or 'none'}"
            )
    worker_params, our_params = _flatten(worker.get("params") or {}), _flatten(ours.get("params") or {})
    missing = object()
    for key in sorted(set(worker_params) | set(our_params)):
        theirs, mine = worker_params.get(key, missing), our_params.get(key, missing)
        if theirs != mine:
            return (
                f"parameter {key}: the worker ran {'nothing' if theirs is missing else _short(theirs)}, "
                f"this workspace has {'nothing' if mine is missing else _short(mine)}"
            )
    return None


def refusal(stage: str, difference: str) -> str:
    """The one line that refuses a result."""
    return (
        f"{stage}: result refused, its inputs differ from this workspace's: {difference}; nothing of it "
        "was recorded (run the command again to train with the workspace's inputs)"
    )
