"""A hall file's errors name the line to fix: a field engineer at a Pi's console should not
count [[agents]] headers in a 1,000-line file by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from hallq.config import parse_config
from hallq.config_lines import Loc, key_lines
from hallq.errors import ConfigError

LIWAN = Path(__file__).parents[1] / "examples" / "liwan.toml"


def written(node: Any, at: Loc = ()) -> list[Loc]:
    """Every table, array-of-tables entry and key the parsed file holds."""
    out: list[Loc] = [at] if at else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += written(value, (*at, key))
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        out = [at]
        for i, value in enumerate(node):
            out += written(value, (*at, i))
    return out


def line_in(problem: str) -> int:
    return int(problem.split("line ", 1)[1].split(")", 1)[0])


def test_every_key_of_the_example_hall_is_placed_on_its_own_line() -> None:
    text = LIWAN.read_text(encoding="utf-8")
    rows = text.splitlines()
    lines = key_lines(text)
    paths = written(tomllib.loads(text))
    assert len(paths) > 1000
    for path in paths:
        assert path in lines, path
        row = rows[lines[path] - 1]
        last = path[-1]
        if isinstance(last, str):
            assert last in row, (path, lines[path], row)
        else:  # an entry of an array of tables: its header or its inline table
            assert "[[" in row or "{" in row, (path, lines[path], row)


def test_a_problem_names_the_line_it_is_on() -> None:
    text = LIWAN.read_text(encoding="utf-8")
    rows = text.splitlines()
    bad = text.replace('site = "branch"  #', 'site = "annex"  #', 1)
    with pytest.raises(ConfigError) as caught:
        parse_config(bad, "liwan.toml")
    (problem,) = caught.value.problems
    line = line_in(problem)
    assert rows[line - 1].startswith('site = "branch"'), problem  # the line to edit
    assert problem.startswith("agents[13].site (agent pi-d04, line ")
    # inside an inline table of an array that runs over lines
    bad = text.replace(
        '{ id = "rate-23",  kind = "rating_pad", window = 23',
        '{ id = "rate-23",  kind = "rating_pad", window = 99',
        1,
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(bad, "liwan.toml")
    (problem,) = caught.value.problems
    line = line_in(problem)
    assert '"rate-23"' in rows[line - 1], problem


def test_a_value_from_the_environment_names_its_variable_not_a_line() -> None:
    text = LIWAN.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "liwan.toml", environ={"HALLQ_BROKER_URL": "http://x"})
    assert any(p.startswith("broker.url (from HALLQ_BROKER_URL)") for p in caught.value.problems)
