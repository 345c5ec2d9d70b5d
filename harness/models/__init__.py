"""Networks: timm models, the CIFAR variants harness registers with timm (their names, torch-free:
`harness.models.names`), stage features and pretrained weights.

May import: `harness.errors`, `harness.schema`, the strategy registry's
`Stage` type. Never `harness.config` (a model takes what it needs from a recipe as arguments), the
loop, data, teachers or sweeps.
"""
