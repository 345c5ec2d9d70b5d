"""Helpers the tests share (plain functions and constants; the fixtures live in tests/conftest.py).

`recipes`: the repository's root, tiny real recipes and the real CLI in a subprocess.
`runs`: runs started in a subprocess, struck at a chosen checkpoint, and their exact metrics.
`datagen`: small generated data sets in their real on-disk formats.
`golden`: fixed inputs and helpers for the strategies' golden tests.
`marks`: markers with arguments (`ffcv_test`) and the tools some tests need (`CHROMIUM`).

No test file imports another test file or conftest.py: what two test files share lives here.
"""
