from __future__ import annotations

from pathlib import Path

import pytest

from hallq import contract
from hallq.errors import TopicError
from hallq.topics import Action, HallTopics, StateKind, parse

DOC = Path(__file__).resolve().parent.parent / "mqtt_topics.md"


def test_mqtt_topics_md_matches_the_models() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert contract.splice(text) == text, (
        "mqtt_topics.md is out of date: run `python -m hallq.contract --write mqtt_topics.md`"
    )


def test_a_changed_model_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    spec = contract.STATE_TOPICS[StateKind.BOARD]
    changed = contract.TopicSpec(**{**spec.__dict__, "retained": False})
    monkeypatch.setitem(contract.STATE_TOPICS, StateKind.BOARD, changed)
    monkeypatch.setattr(
        contract,
        "ALL_TOPICS",
        tuple(changed if s is spec else s for s in contract.ALL_TOPICS),
    )
    assert contract.splice(text) != text


def test_every_documented_topic_parses_to_its_own_spec() -> None:
    t = HallTopics("liwan")
    for action, spec in contract.CLIENT_TOPICS.items():
        for role in spec.roles:
            topic = t.client(role, "dev-1", action)
            assert contract.spec_for(parse(topic)) is spec
            assert "`" + spec.pattern + "`" in DOC.read_text(encoding="utf-8")


def test_client_topics_of_the_wrong_role_are_not_in_the_contract() -> None:
    with pytest.raises(TopicError, match="not used by role 'board'"):
        contract.spec_for(parse(HallTopics("liwan").cmd("board", "b1")))


def test_commands_are_never_retained_or_queued() -> None:
    cmd = contract.CLIENT_TOPICS[Action.CMD]
    assert not cmd.retained
    assert not cmd.queue_offline
    assert cmd.deadline
    assert all(spec.retained for spec in contract.STATE_TOPICS.values())
