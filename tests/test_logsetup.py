"""What a client sends cannot forge a log line or leak an ID number, in either format."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from hallq.logsetup import setup_logging


@pytest.mark.parametrize("json_lines", [False, True])
def test_control_characters_from_a_device_stay_on_the_line_they_came_in(
    json_lines: bool,
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("INFO", environ={}, stream=stream, json_lines=json_lines)
        hostile = "A001\n12:00:00 ERROR hallq.coordinator: forged\x1b[2J\u2028x 110101199003077777"
        logging.getLogger("hallq.test").warning("refused %s", hostile)
        try:
            raise ValueError(f"bad field {hostile}")
        except ValueError:
            logging.getLogger("hallq.test").exception("handler failed")
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    records: list[Any] = [json.loads(line) for line in lines] if json_lines else list(lines)
    text = stream.getvalue()
    assert "\x1b" not in text
    assert "\u2028" not in text
    assert "110101199003077777" not in text
    if json_lines:
        assert len(records) == 2
        assert "\\n12:00:00" in records[0]["msg"]
    else:
        assert lines[0].endswith(
            "refused A001\\n12:00:00 ERROR hallq.coordinator: forged\\e[2J\\u2028x [id-redacted]"
        )
        assert not any(line.startswith("12:00:00 ERROR") for line in lines)
