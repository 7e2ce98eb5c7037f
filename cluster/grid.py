"""-S arguments: the points of a grid, params.yaml edits, and the clean workspace each point starts from."""

import itertools
import subprocess
from pathlib import Path

import yaml

from cluster.dvc_command import dvc
from stages.errors import ParamsError


def parse_overrides(overrides: list[str]) -> list[dict[str, object]]:
    """-S arguments as the points of their grid: 'a=1,2' and 'b=x' give [{a: 1, b: x}, {a: 2, b: x}].

    Raises:
        ParamsError: an argument is not key=value.
    """
    axes = []
    for override in overrides:
        key, separator, values = override.partition("=")
        if not separator or not key:
            raise ParamsError(f"-S {override!r}: expected key=value or key=v1,v2 (DVC's syntax)")
        try:
            axes.append([(key, yaml.safe_load(value)) for value in top_level_values(values)])
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "unreadable"
            raise ParamsError(f"-S {override!r}: not a YAML value ({problem}); expected e.g. 5, [1,2] or a,b") from None
    return [dict(point) for point in itertools.product(*axes)]


def top_level_values(values: str) -> list[str]:
    """'2,3' is two values, '[1,2]' one list, '[1,2],[3]' two lists: commas inside brackets or braces stay."""
    parts, depth, current = [], 0, ""
    for character in values:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(character, 0)
        if character == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += character
    return [*parts, current]


def point_name(point: dict[str, object]) -> str:
    """The experiment name of a point: {'arch.kernel': 5} is 'kernel-5'."""
    return "-".join(f"{key.split('.')[-1]}-{value}" for key, value in point.items())


def apply_params(project: Path, point: dict[str, object]) -> None:
    """Sets each dotted key in params.yaml, keeping its comments (DVC's own YAML round trip).

    Raises:
        ParamsError: a key is not in params.yaml (as `dvc exp run -S` edits existing keys only).
    """
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(project / "params.yaml") as content:
        for dotted, value in point.items():
            *parents, last = dotted.split(".")
            node = content
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or last not in node:
                raise ParamsError(f"-S {dotted}: no such key in params.yaml; expected an existing key")
            node[last] = value


def require_clean_workspace(project: Path) -> None:
    """Each point is saved as an experiment, then the workspace restored with git: uncommitted edits would go.

    Raises:
        ParamsError: git sees changes to tracked files.
    """
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                             capture_output=True, text=True, check=False).stdout.split("\n")  # fmt: skip
    changed = [line[3:] for line in changed if line.strip()]
    if changed:
        raise ParamsError(
            f"-S: the workspace has uncommitted changes ({', '.join(changed[:3])}); expected a clean "
            "workspace (commit or stash first): each point is saved as an experiment, then the workspace restored"
        )


def restore_workspace(project: Path) -> None:
    """Back to the commit: tracked files from git, DVC's outputs from its cache."""
    subprocess.run(["git", "checkout", "--", "."], cwd=project, check=True)
    dvc("checkout", "--force", cwd=project, check=False)
