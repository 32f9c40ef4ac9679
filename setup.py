"""Compile the dispatch core with Cython when possible; metadata lives in pyproject.toml.

``coordinator/dispatch_core.py`` is valid Python, so a failed compile still leaves a working
(slower) install: the build warns and goes on. ``HALLQ_REQUIRE_CYTHON=1`` turns any failure
into a build error (CI, release wheels); ``HALLQ_NO_CYTHON=1`` skips compiling altogether.

Only the coordinator runs the dispatch core, but a build cannot see which extras are being
installed; so whoever installs an agent-only machine says so: ``deploy/install-pi.sh`` sets
``HALLQ_NO_CYTHON=1`` unless ``--server``, and an agent Pi needs neither Cython's C output
nor a compile of it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = ["coordinator.dispatch_core", "coordinator.simulation.fastday"]
REQUIRE = os.environ.get("HALLQ_REQUIRE_CYTHON", "") == "1"
SKIP = os.environ.get("HALLQ_NO_CYTHON", "") == "1"


def warn(message: str) -> None:
    bar = "*" * 78
    print(
        f"\n{bar}\nhallq: {message}\nhallq: installing the pure-Python dispatch core "
        f"(same picks, ~35x slower call_next)\n{bar}\n",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """Turns a compiler failure into a warning unless HALLQ_REQUIRE_CYTHON=1."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.failed: set[str] = set()

    def finalize_options(self) -> None:
        super().finalize_options()
        # The two modules compile independently; on a 2-core CI box this halves the wait.
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if REQUIRE:
                raise
            warn(f"building the compiled dispatch core failed: {exc}")

    def build_extensions(self) -> None:
        super().build_extensions()
        # Forget what failed, so the editable/in-place copy and the wheel do not look for it.
        self.extensions = [ext for ext in self.extensions if ext.name not in self.failed]

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            self.failed.add(ext.name)
            warn(f"compiling {ext.name} failed: {exc}")


def ext_modules() -> list[Extension]:
    if SKIP:
        if REQUIRE:
            sys.exit("hallq: HALLQ_NO_CYTHON=1 and HALLQ_REQUIRE_CYTHON=1 contradict each other")
        print("hallq: HALLQ_NO_CYTHON=1, not compiling the dispatch core", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        if REQUIRE:
            raise RuntimeError("HALLQ_REQUIRE_CYTHON=1 but Cython is not importable") from exc
        warn("Cython is not installed")
        return []
    extensions = [Extension(name, [name.replace(".", "/") + ".py"]) for name in COMPILED]
    try:
        return list(cythonize(extensions, language_level=3, quiet=True))
    except Exception as exc:
        if REQUIRE:
            raise
        warn(f"cythonize failed: {exc}")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
