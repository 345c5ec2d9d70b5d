"""`harness run`'s checks before anything is written: a teacher run's recipe must load."""

from __future__ import annotations

from click.testing import CliRunner

from harness.cli import main
from tests.support.recipes import KD, tiny_recipe, write_recipe


def test_a_misspelled_teacher_run_is_one_line_and_no_run_folder(tmp_path):
    student = write_recipe(
        tmp_path / "student.yaml", tiny_recipe(strategy=KD, teacher={"run": "recipes/nope.yaml"})
    )
    runs_dir = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(student), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: teacher.run: ") and "nope.yaml" in line
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # no failed run folder
