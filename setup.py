"""Packaging for harness: a benchmark harness for knowledge distillation vs label smoothing."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'__version__ = "([^"]+)"', (Path(__file__).parent / "harness" / "__init__.py").read_text()
).group(1)

setup(
    name="harness",
    version=VERSION,
    description="Image-classification benchmark harness: knowledge distillation vs label smoothing",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["harness", "harness.*"]),
    package_data={"harness.sweeps": ["rates.csv"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "timm==1.0.31",
        "pyarrow>=15",
        "click>=8.1",
        "pyyaml>=6",
        "numpy>=1.24",
        "tqdm>=4.60",
        "submitit>=1.5",
        "scipy>=1.11",
        "optuna>=4.0",  # harness tune: pure Python (sqlalchemy, alembic, colorlog), JournalStorage
    ],
    extras_require={
        "ffcv": ["ffcv==1.0.2"],
        # experiment trackers beside the Parquet record (docs/tracking.md)
        "tensorboard": ["tensorboard>=2.14"],
        "mlflow": ["mlflow-skinny>=2.10"],
        "wandb": ["wandb>=0.17"],
        "tracking": ["tensorboard>=2.14", "mlflow-skinny>=2.10", "wandb>=0.17"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "hypothesis>=6.100",
            "statsmodels>=0.14",
            "duckdb>=1.0",
            "polars>=1.0",
            "tensorboard>=2.14",  # the trackers' tests read back what each one wrote
            "mlflow-skinny>=2.10",
            "wandb>=0.17",
        ],
    },
    entry_points={"console_scripts": ["harness=harness.cli:main"]},
)
