"""The one reading of the ``CI`` variable: what a developer may skip, CI must have.

``.ci/run`` sets ``CI=1``; hosted runners set ``CI=true``. "", "0", "false" and "no" mean
not CI, so ``CI=false`` on a laptop does not turn every missing tool into a failure.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """A tool or build the test needs is absent: skip here, fail under CI (where it is
    installed on purpose, so its absence is a broken run, not a smaller one)."""
    if in_ci():
        pytest.fail(f"CI must have it: {what}")
    pytest.skip(what)
