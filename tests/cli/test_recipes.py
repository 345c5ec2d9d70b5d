"""`harness validate` through its click command: one `error:` line per problem, exit status 2."""

from __future__ import annotations

from click.testing import CliRunner

from harness.cli import main
from tests.support.recipes import tiny_recipe, write_recipe


def test_validate_prints_one_line_per_problem_of_every_file(tmp_path):
    good = write_recipe(tmp_path / "good.yaml", tiny_recipe())
    bad = write_recipe(
        tmp_path / "bad.yaml",
        tiny_recipe(seed=-1, optim={"lr": -1, "momentun": 0.9}, runtime={"device": "gpu", "amp": "on"}),
    )
    result = CliRunner().invoke(main, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}: seed: must be >= 0, got -1",
        f"error: {bad}: optim.momentun: unknown key; did you mean 'momentum'? (known: name, lr, "
        "lr_base_batch, momentum, nesterov, weight_decay, decay_bias_and_norm, kwargs)",
        f"error: {bad}: optim.lr: must be > 0, got -1",
        f"error: {bad}: runtime.device: must be one of 'auto', 'cpu', 'cuda', got 'gpu'; "
        "did you mean 'cuda' or 'cpu'?",
        f"error: {bad}: runtime.amp: must be one of 'auto', 'bf16', 'off', got 'on'",
    ]
    assert result.stdout.startswith(f"ok: {good} (")
