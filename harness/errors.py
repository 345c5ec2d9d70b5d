"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""

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


class InterruptedRun(HarnessError):
    """The run stopped on SIGTERM/SIGINT after writing a checkpoint."""

    exit_code = 130
