"""`harness.models.names` lists exactly the architectures harness registers with timm, and a
recipe accepts them without importing the model code."""

import subprocess
import sys

import timm
from timm.models import model_entrypoint

import harness.models.build  # noqa: F401  (registers harness's architectures with timm)
from harness.models.names import CIFAR_ARCHS, CIFAR_KD_ARCHS, HARNESS_ARCHS


def _registered_by(prefix: str) -> list[str]:
    return [name for name in timm.list_models() if model_entrypoint(name).__module__.startswith(prefix)]


def test_names_are_what_harness_registers_with_timm():
    assert sorted(HARNESS_ARCHS) == sorted(_registered_by("harness."))
    assert sorted(CIFAR_ARCHS) == sorted(_registered_by("harness.models.build"))
    assert sorted(CIFAR_KD_ARCHS) == sorted(_registered_by("harness.models.cifar"))
    assert len(set(HARNESS_ARCHS)) == len(HARNESS_ARCHS)


def test_a_recipe_checks_harness_archs_without_the_model_code():
    code = (
        "import sys\n"
        "from harness.config.recipe import check_arch\n"
        "check_arch('resnet8x4_cifar', 'model.arch')\n"
        "check_arch('densenet121_cifar', 'model.arch')\n"
        "print(sorted(m for m in sys.modules if m.startswith('harness.models')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['harness.models', 'harness.models.names']"
