"""Choose the dispatch core: the Cython build of ``dispatch_core.py`` or that file as Python.

Both come from one source, so they must pick the same tickets; the compiled one is just
faster. ``HALLQ_DISPATCH=auto|compiled|pure`` sets what ``load_core()`` returns by default:
``compiled`` makes a missing build an error instead of a silent slowdown, ``pure`` lets a
developer rule the extension out when chasing a bug.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.dispatch_core import DispatchCore

__all__ = ["ENV_VAR", "KINDS", "active_kind", "describe", "load_core"]

ENV_VAR = "HALLQ_DISPATCH"
KINDS = ("auto", "compiled", "pure")
_PURE_NAME = "coordinator._dispatch_core_pure"
_SOURCE = Path(__file__).with_name("dispatch_core.py")


def load_core(kind: str | None = None) -> type[DispatchCore]:
    """The ``DispatchCore`` class of the requested kind (default: ``$HALLQ_DISPATCH`` or auto).

    ``auto`` takes the compiled extension when it imports and the pure source otherwise;
    ``compiled`` raises ImportError when there is no extension; ``pure`` always runs the .py
    source, even next to a built extension, loaded under a module name of its own.
    """
    kind = _resolve(kind)
    if kind == "pure":
        core: type[DispatchCore] = _pure_module().DispatchCore
        return core
    module = importlib.import_module("coordinator.dispatch_core")
    if kind == "compiled" and not _is_extension(module):
        raise ImportError(
            "the compiled dispatch core is not built (coordinator.dispatch_core was loaded "
            f"from {module.__file__}); reinstall with Cython and a C compiler available, "
            "e.g. `HALLQ_REQUIRE_CYTHON=1 pip install -e .`, or use HALLQ_DISPATCH=pure"
        )
    core = module.DispatchCore
    return core


def active_kind() -> str:
    """``"compiled"`` or ``"pure"``: what ``load_core()`` gives in this environment."""
    return "compiled" if _is_extension(sys.modules[load_core().__module__]) else "pure"


def describe() -> str:
    """One line for logs and ``--version``, so a slow hall can be traced to a pure install."""
    try:
        core = load_core()
    except ImportError:
        return "dispatch core: unavailable (HALLQ_DISPATCH=compiled but no compiled extension)"
    module = sys.modules[core.__module__]
    if _is_extension(module):
        return f"dispatch core: compiled ({_cython_version(module)})"
    if _resolve(None) == "pure":
        return f"dispatch core: pure Python ({ENV_VAR}=pure)"
    return "dispatch core: pure Python (no compiled extension found)"


def _resolve(kind: str | None) -> str:
    if kind is None:
        kind = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
        source = f"{ENV_VAR}={kind!r}"
    else:
        source = f"kind={kind!r}"
    if kind not in KINDS:
        raise ValueError(f"{source}: expected one of {', '.join(KINDS)}")
    return kind


def _is_extension(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def _pure_module() -> ModuleType:
    module = sys.modules.get(_PURE_NAME)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(_PURE_NAME, _SOURCE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the pure dispatch core from {_SOURCE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PURE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PURE_NAME]
        raise
    return module


def _cython_version(module: ModuleType) -> str:
    # Cython 3 puts its shared function type in a module named after its ABI, e.g.
    # "_cython_3_0_11"; no public attribute records the version a module was built with.
    match = re.fullmatch(r"_cython_(\d+)_(\d+)_(\d+)\w*", type(module._ints).__module__)
    return f"Cython {'.'.join(match.groups())}" if match else "Cython"
