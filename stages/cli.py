"""The thin shell around every stage's `main()`: expected failures become one line for people.

Bad input (a wrong checksum, a typo in params.yaml, an impossible kernel) raises a
`stages.errors.StudyError`, reported as `<stage>: error: <message>` with exit status 1 and no
traceback. Anything else is a bug, here or in a library, and propagates with its traceback. Set
STAGES_TRACEBACK=1 to see tracebacks for expected errors too.
"""

import os
import sys
import tempfile
from collections.abc import Callable

from stages.errors import StudyError

INTERRUPTED_EXIT_STATUS = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# Lines TensorFlow's shared libraries print while they load, before TensorFlow's log level applies
# (absl logging is not initialized yet, so TF_CPP_MIN_LOG_LEVEL cannot reach them). Neither says
# anything a user can act on; the oneDNN one's only switch would change the numbers.
TENSORFLOW_LOAD_NOTICES = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its informational start-up lines silenced; every other line still shows."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's own switch: INFO off, warnings on
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            for line in captured:
                if not any(notice.encode() in line for notice in TENSORFLOW_LOAD_NOTICES):
                    os.write(2, line)


def run(stage: str, main: Callable[[], None], uses_tensorflow: bool = False) -> None:
    """Calls `main`, turning a StudyError into one message on stderr and exit status 1.

    Ctrl-C (or SIGTERM, which the training stage turns into the same) ends the stage with status
    130 and one line instead of a traceback; a stage that cleans up says so itself.
    """
    if uses_tensorflow:
        import_tensorflow_quietly()
    try:
        main()
    except StudyError as error:
        if os.environ.get("STAGES_TRACEBACK"):
            raise
        print(f"{stage}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; `dvc repro` will run this stage again", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_STATUS)
