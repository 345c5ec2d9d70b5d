"""`harness validate`: check recipe files without running them.

Parse, call, print: the check is `harness.config.validate.validate_recipes`; this module prints
its outcomes (`ok:` lines on stdout, `error:` lines on stderr) and sets the exit status (2 when
any problem). May import: click, `harness.cli.options` and, inside the command, what it calls.
"""

from __future__ import annotations

import click

from harness.cli.options import set_option


@click.command(
    epilog="\b\nExamples:\n"
    "  harness validate 'recipes/**/*.yaml'\n"
    "  harness validate recipes/fashion_mnist/resnet10t_kd.yaml --set teacher.cache=true"
)
@click.argument("recipes", nargs=-1, required=True, metavar="RECIPES_OR_GLOBS...")
@set_option("Override a field of every recipe, e.g. --set seed=1 (repeatable, type-checked).")
def validate(recipes: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check recipes strictly without running them.

    RECIPES: recipe files or globs; one line per problem.
    Globs are expanded as `harness sweep` does (quote them: 'recipes/**/*.yaml' also matches
    the files directly in recipes/).
    """
    from harness.config.validate import validate_recipes
    from harness.teachers.teacher import teacher_recipe

    failed = 0
    for checked in validate_recipes(recipes, overrides, teacher_recipe):
        if checked.problems:
            for problem in checked.problems:
                click.echo(f"error: {problem}", err=True)
            failed += 1
        else:
            assert checked.recipe is not None
            click.echo(f"ok: {checked.path} ({checked.recipe.run_id})")
    if failed:
        raise SystemExit(2)
