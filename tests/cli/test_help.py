"""Every command's `--help`, walked from the click group: a short description that `harness --help`
shows whole, help on every option, and examples that parse as commands on files that exist."""

from __future__ import annotations

import glob
import shlex
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from harness.cli import main
from tests.support.recipes import REPO

#: what `harness --help` shows of a command before click cuts it (its own default limit)
SHORT = 45


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every command under `group` by its path ("run", "data convert"), groups included."""
    for name, command in sorted(group.commands.items()):
        yield " ".join((*path, name)), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


COMMANDS = dict(walk(main))


def examples(command: click.Command) -> list[list[str]]:
    """The command lines of the epilog's examples (its indented lines; after any VAR=value),
    without `harness`."""
    found = []
    for line in (command.epilog or "").splitlines():
        words = shlex.split(line) if line.startswith("  ") else []
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]
        if words[:1] == ["harness"]:
            found.append(words[1:])
    return found


def parse(args: list[str]) -> click.Context:
    """Parse a command line as `harness` would, down to its command (types, choices, callbacks)."""
    command: click.Command = main
    ctx = main.make_context("harness", [], resilient_parsing=True)
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name, *args = args
        found = command.get_command(ctx, name)
        assert found is not None, f"no command {name}"
        command = found
    try:
        return command.make_context(command.name or "", list(args), parent=ctx)
    except click.exceptions.Exit as exc:  # --help
        assert exc.exit_code == 0
        return ctx


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help(name):
    command = COMMANDS[name]
    bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert bare == [], f"harness {name}: options without help: {bare}"


@pytest.mark.parametrize("name", COMMANDS)
def test_the_short_description_is_the_whole_first_line(name):
    command = COMMANDS[name]
    first = (command.help or "").split("\n\n")[0]
    assert "\n" not in first and len(first) <= SHORT, f"harness {name}: first line {first!r}"
    assert command.get_short_help_str(limit=SHORT) == first


def test_harness_help_cuts_no_command():
    listing = CliRunner().invoke(main, ["--help"]).stdout.split("Commands:\n")[1]
    shown = dict(line.split(None, 1) for line in listing.splitlines())
    assert shown == {name: COMMANDS[name].help.split("\n\n")[0] for name in shown}
    assert sorted(shown) == sorted(name for name in COMMANDS if " " not in name)


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_parse_and_name_files_that_exist(name):
    command = COMMANDS[name]
    found = examples(command)
    assert found, f"harness {name}: no example in its help"
    for args in found:
        assert " ".join(args).startswith(name), f"an example of harness {name}: harness {' '.join(args)}"
        parse(args)
        for word in args:
            if word.endswith(".yaml"):
                assert glob.glob(str(REPO / word)), f"harness {name}'s example names {word}: not found"


def test_the_help_ends_with_its_examples():
    text = CliRunner().invoke(main, ["run", "--help"]).stdout
    last = "harness run recipes/fashion_mnist/resnet10t_ce.yaml --set optim.lr=0.05 --set seed=1"
    assert text.rstrip().endswith(last)
    assert "\n  Examples:\n    harness run recipes/fashion_mnist/resnet10t_ce.yaml --smoke\n" in text


def test_cache_teacher_help_names_the_fields_that_make_a_run_read_the_cache():
    text = " ".join(CliRunner().invoke(main, ["cache-teacher", "--help"]).stdout.split())
    assert "recipe says `teacher.cache: true`" in text and "`data.view_seed`, which defaults" in text
