"""The topic groups' models load on first use of their names, and every one is reachable."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

from pydantic import BaseModel

from hallq import messages as m
from hallq.contract import ALL_TOPICS, CLIENT_TOPICS, receivable
from hallq.topics import Action


def test_every_model_of_a_group_is_named_in_the_lazy_table() -> None:
    for module_name, names in m.GROUPS.items():
        module = importlib.import_module(module_name)
        defined = {
            name
            for name, value in vars(module).items()
            if name.isidentifier()  # not pydantic's parametrized RootModel[...]
            and not name.startswith("_")
            and inspect.isclass(value)
            and issubclass(value, BaseModel)
            and value.__module__ == module_name
        }
        assert defined <= set(names), f"{module_name}: not in hallq.messages.GROUPS"
        for name in names:
            assert getattr(m, name) is getattr(module, name)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    assert not hasattr(m, "NoSuchModel")


def test_every_topic_payload_resolves() -> None:
    for spec in ALL_TOPICS:
        assert spec.payload is getattr(m, spec.payload_name)


def test_a_subscription_brings_in_the_specs_of_its_topics() -> None:
    names = [s.payload_name for s in receivable("hallq/v1/liwan/state/queue/+")]
    assert names == ["QueueState"]
    assert [s.payload_name for s in receivable("hallq/v1/liwan/window/w1/reply")] == ["Reply"]
    assert CLIENT_TOPICS[Action.CMD] not in receivable("hallq/v1/liwan/dispenser/+/reply")
    assert len(receivable("hallq/v1/liwan/#")) == len(ALL_TOPICS)


def test_the_session_and_a_window_agent_do_not_create_other_groups_models() -> None:
    code = (
        "import sys, hallq.bus, edge.window, edge.dispenser, edge.panels\n"
        "print(sorted(k for k in sys.modules if k.startswith('hallq.payloads.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = out.stdout.split("\n")[0]
    assert "hallq.payloads.stats" not in loaded
    assert "hallq.payloads.window" not in loaded  # used when a key is pressed, not at import
