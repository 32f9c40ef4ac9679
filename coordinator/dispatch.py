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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.dispatch_core import DispatchCore

__all__ = [
    "ENV_VAR",
    "KINDS",
    "active_kind",
    "core_kind",
    "describe",
    "is_extension",
    "load_core",
    "pure_twin",
]

ENV_VAR = "HALLQ_DISPATCH"
KINDS = ("auto", "compiled", "pure")
_ROOT = Path(__file__).resolve().parent.parent


def load_core(kind: str | None = None) -> type[DispatchCore]:
    """The ``DispatchCore`` class of the requested kind (default: ``$HALLQ_DISPATCH`` or auto).

    ``auto`` takes the compiled extension when it imports and the pure source otherwise;
    ``compiled`` raises ImportError when there is no extension; ``pure`` always runs the .py
    source, even next to a built extension, loaded under a module name of its own.
    """
    kind = _resolve(kind)
    if kind == "pure":
        core: type[DispatchCore] = pure_twin("coordinator.dispatch_core").DispatchCore
        return core
    module = importlib.import_module("coordinator.dispatch_core")
    if kind == "compiled" and not is_extension(module):
        raise ImportError(
            "the compiled dispatch core is not built (coordinator.dispatch_core was loaded "
            f"from {module.__file__}); reinstall with Cython and a C compiler available, "
            "e.g. `HALLQ_REQUIRE_CYTHON=1 pip install -e .`, or use HALLQ_DISPATCH=pure"
        )
    core = module.DispatchCore
    return core


def active_kind() -> str:
    """``"compiled"`` or ``"pure"``: what ``load_core()`` gives in this environment."""
    return core_kind(load_core())


def core_kind(core_cls: type[Any]) -> str:
    """``"compiled"`` or ``"pure"``: which build a core class (from ``load_core``) is."""
    return "compiled" if is_extension(sys.modules[core_cls.__module__]) else "pure"


def describe() -> str:
    """One line for logs and ``--version``, so a slow hall can be traced to a pure install."""
    try:
        core = load_core()
    except ImportError:
        return "dispatch core: unavailable (HALLQ_DISPATCH=compiled but no compiled extension)"
    module = sys.modules[core.__module__]
    if is_extension(module):
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


def is_extension(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def pure_twin(name: str) -> ModuleType:
    """The ``.py`` source of a compiled module, run as Python under a name of its own.

    ``coordinator.dispatch_core`` becomes ``coordinator._dispatch_core_pure``: the same
    code, importable next to the built extension, for ``pure`` runs and comparisons.
    """
    package, _, leaf = name.rpartition(".")
    pure_name = f"{package}._{leaf}_pure"
    module = sys.modules.get(pure_name)
    if module is not None:
        return module
    source = _ROOT.joinpath(*name.split(".")).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(pure_name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the pure {name} from {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[pure_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[pure_name]
        raise
    return module


def _cython_version(module: ModuleType) -> str:
    # Cython 3 puts its shared function type in a module named after its ABI, e.g.
    # "_cython_3_0_11"; no public attribute records the version a module was built with.
    match = re.fullmatch(r"_cython_(\d+)_(\d+)_(\d+)\w*", type(module._ints).__module__)
    return f"Cython {'.'.join(match.groups())}" if match else "Cython"
