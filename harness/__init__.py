"""harness: a benchmark harness for image classification with knowledge distillation.

Does knowledge distillation beat label smoothing, and why? Recipes pair a timm architecture with
a training strategy and a data loader; runs write per-epoch metrics to Parquet; the leaderboard
compares every strategy with its matched label-smoothing baseline over seeds.
"""

__version__ = "0.1.0"
