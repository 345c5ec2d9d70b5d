"""One run: the training loop, its life-cycle, assembly, optimizer, loss tracking, experiment
trackers (TensorBoard, MLflow, W&B), evaluation of saved weights and smoke runs.

May import every part below it (config, models, data, strategies, teachers, runtime, store,
metrics). Never sweeps, the leaderboard or the CLI.
"""
