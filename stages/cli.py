"""The thin shell around every stage's `main()`: expected failures become one line for people.

Bad input (a wrong checksum, a typo in params.yaml, an impossible kernel) is reported as
`<stage>: error: <message>` with exit status 1 and no traceback. Anything else is a bug and
propagates with its traceback. Set STAGES_TRACEBACK=1 to see tracebacks for every error.
"""

import os
import sys
from collections.abc import Callable

from stages.artifacts import WriteError


class StageError(Exception):
    """An expected failure outside the input's values: a missing tool, an unreachable source."""


EXPECTED_ERRORS = (StageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError, WriteError)


def run(stage: str, main: Callable[[], None]) -> None:
    """Calls `main`, turning an expected error into one message on stderr and exit status 1.

    Ctrl-C ends the stage with status 130 and one line instead of a traceback; the stage's own
    cleanup (see train.py) has already removed what it had written.
    """
    try:
        main()
    except EXPECTED_ERRORS as error:
        if os.environ.get("STAGES_TRACEBACK"):
            raise
        print(f"{stage}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; partial outputs removed, `dvc repro` will run this stage again", file=sys.stderr)
        sys.exit(130)
