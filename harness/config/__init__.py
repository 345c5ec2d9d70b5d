"""Recipes: the YAML schema of a run, its strict loading and the identities derived from it.

Owns the recipe dataclasses (`Recipe` and its sections), YAML reading with its limits, `extends:`
and `--set` overrides, and the identities (`Recipe.hash`, `run_id`, `group_key`, `setting`).
May import: `harness.errors`, `harness.schema`; for the checks that need them, the strategy
registry (`harness.strategies`) and the names of the architectures (`harness.models`).
"""
