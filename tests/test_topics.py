from __future__ import annotations

import pytest

from hallq.errors import TopicError
from hallq.topics import HallTopics, TopicParts, check_filter, check_id, matches, parse

T = HallTopics("liwan")


@pytest.mark.parametrize(
    ("topic", "parts"),
    [
        (T.cmd("window", "win-01"), TopicParts("liwan", "window", "win-01", "cmd")),
        (T.req("disp-1"), TopicParts("liwan", "dispenser", "disp-1", "req")),
        (T.reply("dispenser", "disp-1"), TopicParts("liwan", "dispenser", "disp-1", "reply")),
        (T.status("coordinator", "coord"), TopicParts("liwan", "coordinator", "coord", "status")),
        (T.health("board", "b_main"), TopicParts("liwan", "board", "b_main", "health")),
        (T.window_state(15), TopicParts("liwan", "state", None, "window", "15")),
        (T.queue_state("tax-filing"), TopicParts("liwan", "state", None, "queue", "tax-filing")),
        (T.board_state(), TopicParts("liwan", "state", None, "board")),
        (T.stats_state(), TopicParts("liwan", "state", None, "stats")),
        (T.event("call"), TopicParts("liwan", "event", None, "call")),
    ],
)
def test_builders_and_parser_agree(topic: str, parts: TopicParts) -> None:
    assert parse(topic) == parts


def test_builder_output_is_the_documented_shape() -> None:
    assert T.cmd("window", "win-01") == "hallq/v1/liwan/window/win-01/cmd"
    assert T.window_state(7) == "hallq/v1/liwan/state/window/7"


@pytest.mark.parametrize(
    ("topic", "complaint"),
    [
        ("", "empty topic"),
        ("hallq/v1/liwan/window/+/cmd", "wildcards"),
        ("hallq/v1/liwan/window/#", "wildcards"),
        ("hallq/v1/liwan/window/a+b/cmd", "wildcards"),
        ("hallq/v1/liwan//win-01/cmd", "empty level"),
        ("hallq/v1/liwan/window/win-01/cmd/", "empty level"),
        ("/hallq/v1/liwan/window/win-01/cmd", "empty level"),
        ("hallq/v2/liwan/window/win-01/cmd", "not under hallq/v1"),
        ("other/v1/liwan/window/win-01/cmd", "not under hallq/v1"),
        ("hallq/v1/Liwan/window/win-01/cmd", "hall id 'Liwan'"),
        ("hallq/v1/liwan/kiosk/k1/cmd", "role 'kiosk'"),
        ("hallq/v1/liwan/window/WIN 1/cmd", "client id 'WIN 1'"),
        ("hallq/v1/liwan/window/win-01/jump", "action 'jump'"),
        ("hallq/v1/liwan/window/win-01", "client topics are"),
        ("hallq/v1/liwan/window/win-01/cmd/extra", "client topics are"),
        ("hallq/v1/liwan/state/window", "needs exactly one key"),
        ("hallq/v1/liwan/state/window/0", "window '0'"),
        ("hallq/v1/liwan/state/window/1000", "window '1000'"),
        ("hallq/v1/liwan/state/board/x", "takes no further levels"),
        ("hallq/v1/liwan/state/weather", "state kind 'weather'"),
        ("hallq/v1/liwan/event/party", "event kind 'party'"),
    ],
)
def test_parser_rejects_malformed_topics_saying_why(topic: str, complaint: str) -> None:
    with pytest.raises(TopicError, match="topic") as info:
        parse(topic)
    assert complaint in str(info.value)


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "A1", "-x", "x" * 33, "with space", "$sys"])
def test_ids_that_cannot_be_a_whole_level_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        check_id(bad, "device id")
    with pytest.raises(TopicError):
        T.cmd("window", bad)


def test_hall_id_is_checked_when_building() -> None:
    with pytest.raises(TopicError, match="hall id"):
        HallTopics("liwan/other")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        (T.every("status"), T.status("window", "win-01"), True),
        (T.every("status"), T.status("coordinator", "coord"), True),
        (T.every("status", "window"), T.status("board", "b1"), False),
        (T.every("req", "dispenser"), T.req("d1"), True),
        (T.all_state(), T.window_state(3), True),
        (T.all_state(), T.board_state(), True),
        (T.all_events(), T.event("call"), True),
        (T.all_events(), T.window_state(3), False),
        (HallTopics("other").every("cmd"), T.cmd("window", "w"), False),
    ],
)
def test_wildcard_filters(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(check_filter(topic_filter), topic) is expected


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", "", "a/+x"])
def test_malformed_filters_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        check_filter(bad)
