"""Networks: timm models, the CIFAR variants harness registers with timm, stage features and
pretrained weights.

May import: `harness.errors`, `harness.schema`, `harness.store` (files), the strategy registry's
`Stage` type. Never the loop, data, teachers or sweeps.
"""
