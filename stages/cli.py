"""The thin shell around every stage's `main()`: expected failures become one line for people.

Bad input (a wrong checksum, a typo in params.yaml, an impossible kernel) is reported as
`<stage>: error: <message>` with exit status 1 and no traceback. Anything else is a bug and
propagates with its traceback. Set STAGES_TRACEBACK=1 to see tracebacks for every error.
"""

import os
import sys
from collections.abc import Callable


class StageError(Exception):
    """An expected failure outside the input's values: a missing tool, an unreachable source."""


EXPECTED_ERRORS = (StageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


def run(stage: str, main: Callable[[], None]) -> None:
    """Calls `main`, turning an expected error into one message on stderr and exit status 1."""
    try:
        main()
    except EXPECTED_ERRORS as error:
        if os.environ.get("STAGES_TRACEBACK"):
            raise
        print(f"{stage}: error: {error}", file=sys.stderr)
        sys.exit(1)
