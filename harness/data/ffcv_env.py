"""Importing ffcv: a one-line error where it is missing, and numba's on-disk cache where it is not.

ffcv compiles its pipeline with numba the first time each process iterates a loader, and
importing it compiles numba's typed-dict code (ffcv builds a `numba.typed.Dict` at import).
On this project's 2-core machine that is ~10 s at import plus ~20 s at the first batch, in every
process. numba can keep compiled code on disk, but only for functions compiled with
`cache=True`, which ffcv never asks for. `require_ffcv()` therefore, before importing ffcv:

* points numba at a cache folder (`NUMBA_CACHE_DIR` if set, else `~/.cache/harness/numba`);
* enables caching on numba's typed-dict functions;
* wraps ffcv's `Compiler.compile` so every function it compiles is cached where numba allows.

numba refuses to cache functions that call ctypes (ffcv's JPEG decode and resize) and code
generated at run time (ffcv's stage glue): those still compile in each process (~3 s here); the
crop, flip, translate, label and reader functions load from the cache. Measured with
`benchmarks/bench_loader.py --compile`: see the benchmark's notes. Set `HARNESS_NUMBA_CACHE=0`
to leave numba and ffcv untouched.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

from harness.errors import DataError

INSTALL_HINT = (
    "install it with: pip install -e '.[ffcv]' (it needs the system packages pkg-config "
    "libturbojpeg0-dev libopencv-dev, see scripts/setup.sh), or use data.backend: torch"
)

_state: dict[str, bool] = {"cache": False}


def default_cache_dir() -> Path:
    """Where numba's compiled ffcv code is kept (XDG cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness" / "numba"


def cache_enabled() -> bool:
    return os.environ.get("HARNESS_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def _enable_numba_cache() -> None:
    """Cache dir + cached typed-dict functions; must run before ffcv is first imported."""
    if os.environ.get("NUMBA_CACHE_DIR") is None:
        os.environ["NUMBA_CACHE_DIR"] = str(default_cache_dir())
    import numba.typed.typeddict as typeddict
    from numba.core import config
    from numba.core.dispatcher import Dispatcher
    from numba.core.errors import NumbaWarning

    config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    for value in vars(typeddict).values():
        if isinstance(value, Dispatcher):
            with contextlib.suppress(RuntimeError):
                value.enable_caching()
    # numba says so, once per function, when it cannot cache (ctypes calls): expected here.
    warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=NumbaWarning)


def _cache_ffcv_compiles() -> None:
    """Make ffcv's `Compiler.compile` return numba dispatchers that cache to disk where they can."""
    from ffcv.pipeline.compiler import Compiler
    from numba.core.dispatcher import Dispatcher

    if getattr(Compiler, "_harness_cached", False):
        return
    plain = Compiler.compile.__func__

    def compile_cached(cls, code, signature=None):
        compiled = plain(cls, code)  # lazy: nothing is compiled before caching is on
        if not isinstance(compiled, Dispatcher):
            return compiled  # ffcv's compiler is disabled
        with contextlib.suppress(RuntimeError):  # generated code has no file to key a cache on
            compiled.enable_caching()
        if signature is not None:
            compiled.compile(signature)
        return compiled

    Compiler.compile = classmethod(compile_cached)
    Compiler._harness_cached = True


def require_ffcv() -> ModuleType:
    """Import ffcv (with numba's cache enabled) or fail with one line saying how to get it."""
    fresh = "ffcv" not in sys.modules
    if cache_enabled() and fresh and not _state["cache"]:
        try:
            _enable_numba_cache()
        except ImportError:
            pass  # no numba: the import below says what is missing
    try:
        import ffcv
        import ffcv.fields
        import ffcv.loader
    except (ImportError, OSError) as exc:  # OSError: a system library (libturbojpeg) is missing
        message = f"the ffcv backend needs ffcv, which cannot be imported ({exc}); {INSTALL_HINT}"
        raise DataError(message) from None
    if cache_enabled() and not _state["cache"]:
        _cache_ffcv_compiles()
        _state["cache"] = True
    return ffcv
