"""Importing ffcv: a one-line error where it is missing, and numba's on-disk cache where it is not.

ffcv compiles its pipeline with numba the first time each process iterates a loader, and
importing it compiles numba's typed-dict code (ffcv builds a `numba.typed.Dict` at import).
On this project's 2-core machine that is ~10 s at import plus ~20 s at the first batch, in every
process. numba can keep compiled code on disk, but only for functions compiled with
`cache=True`, which ffcv never asks for. `require_ffcv()` therefore, before importing ffcv:

* points numba at a cache folder (`NUMBA_CACHE_DIR` if set, else `~/.cache/harness/numba`);
* enables caching on numba's typed-dict functions;
* wraps ffcv's `Compiler.compile` so every function it compiles is cached on disk where numba
  allows, and compiled once per process: ffcv makes new closures for every loader (train,
  validation, each test), which numba would compile again; equal operations (same code, same
  captured values) now share one dispatcher.

numba refuses to cache on disk functions that call ctypes (ffcv's JPEG decode and resize): they
compile once in each process (a few seconds); the crop, flip, translate, label and reader
functions load from the disk cache. `python -m harness.benchmarking.loader --compile` measures
the first batch of a fresh process with and without the cache. Set `HARNESS_NUMBA_CACHE=0` to turn this
off. (Separately, and always, `_fix_os_cache_types` stops ffcv from corrupting numba's types.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import DataError

INSTALL_HINT = (
    "install it with: pip install -e '.[ffcv]' (it needs the system packages pkg-config "
    "libturbojpeg0-dev libopencv-dev, see scripts/setup.sh), or use data.backend: torch"
)

_state: dict[str, bool] = {"cache": False}
# (function key, parallel, signature) -> (dispatcher, captured objects kept alive)
_compiled: dict[tuple, tuple[Any, tuple]] = {}


def default_cache_dir() -> Path:
    """Where numba's compiled ffcv code is kept (XDG cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness" / "numba"


def cache_enabled() -> bool:
    return os.environ.get("HARNESS_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def _enable_numba_cache(before_ffcv: bool) -> None:
    """The cache folder, and cached typed-dict functions (of use before ffcv is first imported)."""
    if os.environ.get("NUMBA_CACHE_DIR") is None:
        os.environ["NUMBA_CACHE_DIR"] = str(default_cache_dir())
    import numba.typed.typeddict as typeddict
    from numba.core import config
    from numba.core.dispatcher import Dispatcher

    config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    if not before_ffcv:
        return
    for value in vars(typeddict).values():
        if isinstance(value, Dispatcher):
            with contextlib.suppress(RuntimeError):
                value.enable_caching()


def _quiet_uncachable_warning() -> None:
    """numba warns, once per function, when it cannot cache one (ctypes calls): expected here."""
    from numba.core.errors import NumbaWarning

    warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=NumbaWarning)


def _function_key(fn: Any) -> tuple | None:
    """A function as a key: its code and what its closure captured (None if no plain function)."""
    try:
        return (fn.__code__, *(_captured_key(cell.cell_contents) for cell in fn.__closure__ or ()))
    except (AttributeError, ValueError):  # not a plain function, or an empty cell
        return None


def _captured_key(value: Any) -> tuple:
    """A captured value as a key: arrays and scalars by value, compiled functions by their code,
    other objects by identity (kept alive by `_compiled`)."""
    import numpy as np
    from numba.core.dispatcher import Dispatcher

    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, tuple):
        return ("tuple", *(_captured_key(v) for v in value))
    if isinstance(value, Dispatcher):
        inner = _function_key(value.py_func)
        return ("compiled", bool(value.targetoptions.get("parallel")), inner or id(value))
    return ("object", id(value))


def _cache_ffcv_compiles() -> None:
    """Make ffcv's `Compiler.compile` reuse equal compiles and cache them on disk where it can."""
    from ffcv.pipeline.compiler import Compiler
    from numba.core.dispatcher import Dispatcher

    if getattr(Compiler, "_harness_cached", False):
        return
    plain = Compiler.compile.__func__

    def compile_cached(cls, code, signature=None):
        if not cls.is_enabled:
            return plain(cls, code, signature)
        # Only the operations (closures ffcv generates per loader) are shared. Their helpers
        # stay per operation, as in ffcv: numba's type inference fails on a helper dispatcher
        # that callers compiled differently have already specialised.
        key = None
        if getattr(code, "__closure__", None):
            function = _function_key(code)
            parallel = bool(getattr(code, "is_parallel", False)) and cls.num_threads > 1
            key = None if function is None else (function, parallel, str(signature))
        if key is not None and key in _compiled:
            return _compiled[key][0]
        compiled = plain(cls, code)  # lazy: nothing is compiled before caching is on
        # `no_disk_cache`: code that reads process memory through a captured address
        if isinstance(compiled, Dispatcher) and not getattr(code, "no_disk_cache", False):
            with contextlib.suppress(RuntimeError):  # generated code has no file to key a cache on
                compiled.enable_caching()
        if isinstance(compiled, Dispatcher) and signature is not None:
            compiled.compile(signature)
        if key is not None:
            _compiled[key] = (compiled, tuple(cell.cell_contents for cell in code.__closure__))
        return compiled

    Compiler.compile = classmethod(compile_cached)
    Compiler._harness_cached = True


def _fix_os_cache_types() -> None:
    """Stop ffcv corrupting numba's types (always applied, it is a correctness fix).

    ffcv 1.0.2's OS-cache reader marks its state types read-only in place
    (`nb.uint8[::1].mutable = False`), but numba shares one instance of each type across the
    process: the change alters the hash of the type every uint8 array has, and numba's own
    dictionaries keyed by it then fail with `KeyError` (intermittent loader failures, and
    "Exception ignored" messages at exit). This builds the same read-only types as new types
    and compiles the same reader against them: the sample at `address` is the `size` bytes
    the allocation table records for that pointer.
    """
    import numpy as np
    from ffcv.memory_managers.os_cache import OSCacheManager
    from ffcv.pipeline.compiler import Compiler
    from numba.core import types

    if getattr(OSCacheManager, "_harness_types", False):
        return
    data = types.Array(types.uint8, 1, "C", readonly=True)
    index = types.Array(types.uint64, 1, "C")
    state = types.Tuple([data, index, index])

    def compile_reader(self):
        def read(address, mem_state):
            mapped, pointers, sizes = mem_state
            return mapped[address : address + sizes[np.searchsorted(pointers, address)]]

        return Compiler.compile(read, data(types.uint64, state))

    OSCacheManager.state_type = property(lambda self: state)
    OSCacheManager.compile_reader = compile_reader
    OSCacheManager._harness_types = True


def _keep_torch_threads() -> None:
    """ffcv's `Compiler.set_num_threads` sets numba's threads and also torch's, for the whole
    process (to 1 at import, to the worker count at each epoch): CPU training would slow down and
    its numerics change with the thread count. Let it set numba's alone."""
    from ffcv.pipeline.compiler import Compiler

    if getattr(Compiler, "_harness_threads", False):
        return
    import numba

    def set_num_threads(cls: type, n: int) -> None:
        n = n if n >= 1 else (os.cpu_count() or 1)
        cls.num_threads = n
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    Compiler.set_num_threads = classmethod(set_num_threads)
    Compiler._harness_threads = True


def require_ffcv() -> ModuleType:
    """Import ffcv (with numba's cache enabled) or fail with one line saying how to get it."""
    if cache_enabled() and not _state["cache"]:
        with contextlib.suppress(ImportError):  # no numba: the import below says what is missing
            _enable_numba_cache(before_ffcv="ffcv" not in sys.modules)
    import torch

    torch_threads = torch.get_num_threads()
    try:
        import ffcv
        import ffcv.fields
        import ffcv.loader
    except (ImportError, OSError) as exc:  # OSError: a system library (libturbojpeg) is missing
        message = f"the ffcv backend needs ffcv, which cannot be imported ({exc}); {INSTALL_HINT}"
        raise DataError(message) from None
    finally:
        torch.set_num_threads(torch_threads)  # importing ffcv sets it to 1 for the whole process
    _keep_torch_threads()
    _fix_os_cache_types()
    if cache_enabled():
        if not _state["cache"]:
            _cache_ffcv_compiles()
            _state["cache"] = True
        _quiet_uncachable_warning()  # every time: test runners reset warning filters
    return ffcv
