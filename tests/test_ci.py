"""The CI guard itself: which values of ``CI`` mean a CI run."""

from __future__ import annotations

import pytest

from .ci import in_ci


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", " "])
def test_unset_or_false_is_not_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert not in_ci()


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_ci_runners_values_are_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
