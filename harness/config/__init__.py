"""Recipes: the schema of a run and its identities (`recipe`), reading them from YAML (`loading`).

The common names are here: `from harness.config import Recipe, load_recipe`.
May import: `harness.errors`, `harness.schema`; see each module for the rest.
"""

from harness.config.loading import from_mapping, load_recipe, read_yaml, read_yaml_file
from harness.config.recipe import DataConfig, ProgressiveConfig, Recipe, RuntimeConfig, recipe_dir

__all__ = [
    "DataConfig",
    "ProgressiveConfig",
    "Recipe",
    "RuntimeConfig",
    "from_mapping",
    "load_recipe",
    "read_yaml",
    "read_yaml_file",
    "recipe_dir",
]
