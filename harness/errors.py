"""Errors a user can act on: the CLI prints them as one line and exits non-zero.

An `OSError` from the environment (disk full, read-only folder, a file where a folder should be)
is reported the same way, by `describe_os_error`, with exit status 74 (EX_IOERR).
"""

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HarnessError(Exception):
    """A problem with user input or the environment, reported as a single line."""

    exit_code = 2

    def __str__(self) -> str:
        # One line whatever the user wrote: a newline or a terminal escape in a key, a value or
        # a `--set` string is shown escaped (\n, \x1b), never acted on.
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], super().__str__())


class RecipeError(HarnessError):
    """A recipe (or a --set override) that does not validate; the message names the dotted path."""

    #: the dotted path of the offending field, where the check knows it
    field: str | None = None


class DataError(HarnessError):
    """A data set that is missing, unreadable or does not match the recipe."""


class TeacherError(HarnessError):
    """A teacher that cannot be built: missing checkpoint, wrong class count, unknown run."""


class RunStateError(HarnessError):
    """A run folder in a state that forbids the requested action (exists, locked, corrupt)."""


class RunBusyError(RunStateError):
    """Another process holds the run's lock (a concurrent run or sweep is training it)."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class DivergedError(HarnessError):
    """Training produced a non-finite loss."""

    exit_code = 3


def describe_os_error(exc: OSError) -> str:
    """An environment fault (disk full, read-only or missing folder, a file where a folder should
    be) as one line naming the path: `runs/x: No space left on device (errno 28)`."""
    reason = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    code = f" (errno {exc.errno})" if exc.errno else ""
    line = f"{where}: {reason}{code}" if where is not None else f"{reason}{code}"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], line)


#: exit status of `harness` when the environment refused a read or a write (EX_IOERR)
OS_ERROR_EXIT = 74


class InterruptedRun(HarnessError):
    """The run stopped on SIGTERM/SIGINT after writing a checkpoint."""

    exit_code = 130
