"""The one family of expected failures: bad input a person can fix, reported as one line.

Core functions raise these; `cli.run` catches the base class only, so anything else (a bug here or
in a library) keeps its traceback. Each message names the parameter or file, the value received
and what is expected.
"""


class StudyError(Exception):
    """An expected failure: the input, not the code, is at fault."""


class ParamsError(StudyError):
    """A parameter (params.yaml or a command-line argument) is missing, misspelled, ill-typed or out of range."""


class DataError(StudyError):
    """An input file is missing, corrupt, truncated or not what the stage expects."""


class SourceError(StudyError):
    """A data source cannot be reached, or the tool it needs is not installed."""


class WriteError(StudyError):
    """An output could not be written (no space, read-only, no permission); names the file."""
