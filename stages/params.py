"""Reading `params.yaml`: the helpers every stage uses to turn YAML into typed, validated values.

Each stage asks for exactly the keys it declares in `dvc.yaml` and keeps its own typed settings
(a dataclass) in its own module, so editing one stage's settings reruns only that stage. A
missing, misspelled or ill-typed key stops the stage before any data is loaded, with a message
that names the key.
"""

import difflib
from pathlib import Path
from typing import Any

import yaml

from stages.errors import ParamsError

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict:
    """Parses params.yaml with the safe loader.

    Raises:
        ParamsError: the file is missing, not valid YAML (the line is named) or not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found; the pipeline reads its parameters from it") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ParamsError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def select(params: dict, dotted_key: str) -> Any:
    """Returns params[a][b] for `dotted_key` "a.b", naming the closest key when one is missing."""
    node: Any = params
    walked = []
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            raise ParamsError(
                f"params.yaml: missing key '{'.'.join([*walked, part])}'{suggest(part, known)}; "
                f"keys there: {', '.join(map(str, known)) or 'none'}"
            )
        node = node[part]
        walked.append(part)
    return node


def suggest(name: str, known: list[str]) -> str:
    """A ' (did you mean ...?)' hint naming the closest of `known`, or '' when none is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    close = close or [key for key in known if name.startswith(key) or key.startswith(name)][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(
    where: str,
    section: Any,
    required: set[str],
    optional: frozenset[str] = frozenset(),
    *,
    other_keys_allowed: bool = False,
) -> None:
    """Rejects a section that is not a mapping, lacks a required key or has an unknown one.

    Args:
        other_keys_allowed: the section is shared by several stages (`data`), and keys this stage
            does not read belong to another stage's check.
    """
    if not isinstance(section, dict):
        raise ParamsError(f"params.yaml: '{where}' must be a mapping, got {section!r}")
    known = sorted(required | optional)
    for key in section:
        if key not in required and key not in optional and not other_keys_allowed:
            raise ParamsError(
                f"params.yaml: unknown key '{where}.{key}'{suggest(str(key), known)}; expected keys: {', '.join(known)}"
            )
    for key in sorted(required - set(section)):
        raise ParamsError(f"params.yaml: missing key '{where}.{key}'; expected keys: {', '.join(known)}")


def typed(
    where: str, value: Any, expected: type | tuple[type, ...], *, minimum=None, maximum=None, exclusive: bool = False
) -> Any:
    """Checks the type (bool is never taken for a number) and range of one value and returns it."""
    expected_types = expected if isinstance(expected, tuple) else (expected,)
    is_bool_mistaken = isinstance(value, bool) and bool not in expected_types
    if is_bool_mistaken or not isinstance(value, expected_types):
        names = " or ".join(kind.__name__ for kind in expected_types)
        raise ParamsError(f"params.yaml: '{where}' must be {names}, got {value!r}")
    below = minimum is not None and (value <= minimum if exclusive else value < minimum)
    above = maximum is not None and (value >= maximum if exclusive else value > maximum)
    if below or above:
        low = "(" if exclusive else "["
        high = ")" if exclusive else "]"
        bounds = f"{low}{'-inf' if minimum is None else minimum}, {'inf' if maximum is None else maximum}{high}"
        raise ParamsError(f"params.yaml: '{where}' must be in {bounds}, got {value!r}")
    return value


def one_of(where: str, value: Any, choices: tuple[str, ...]) -> str:
    """Checks that `value` is one of `choices` and returns it, suggesting the closest on a typo."""
    if value not in choices:
        raise ParamsError(
            f"params.yaml: '{where}' must be one of {', '.join(choices)}, got {value!r}"
            f"{suggest(str(value), list(choices))}"
        )
    return value


def seed_list(value: Any) -> list[int]:
    """Checks `train.seeds`: a non-empty list of distinct non-negative integers.

    DVC's matrix would make no stage at all for an empty list and silently drop a repeated seed,
    so the list is checked before any training (by `prepare`) and again by `compare`.
    """
    expected = "expected a non-empty list of distinct non-negative integers, e.g. [1, 2, 3]"
    if not isinstance(value, list) or not value:
        raise ParamsError(f"params.yaml: 'train.seeds' is {value!r}; {expected}")
    for position, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ParamsError(f"params.yaml: 'train.seeds[{position}]' is {seed!r}; {expected}")
    repeated = sorted({seed for seed in value if value.count(seed) > 1})
    if repeated:
        raise ParamsError(
            f"params.yaml: 'train.seeds' repeats {', '.join(map(str, repeated))} in {value!r}; {expected}"
        )
    return value
