"""Speed measurements, always as ratios against a baseline measured side by side in one run.

`harness bench` runs the suites (`steps`: harness step vs a bare timm loop and every strategy vs
CE; `epoch`: whole epochs of `harness run`'s loop vs a bare timm loop; `loader`: FFCV vs the
torchvision DataLoader), writes Parquet and prints Markdown tables.
Absolute times depend on the machine; the ratios are what the targets are about.
"""
