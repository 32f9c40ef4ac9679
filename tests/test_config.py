"""Hall configuration: the example hall loads, and every class of mistake names its key path."""

from __future__ import annotations

import io
from datetime import date, time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from hallq.config import ENV_OVERRIDES, HallConfig, KeypadDevice, load_config, parse_config
from hallq.errors import ConfigError
from hallqctl.cli import main
from hallqctl.config_summary import render_summary

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"

HALL = """
[hall]
id = "test-hall"
name = "测试办税服务厅"
timezone = "Asia/Shanghai"
"""

ZONES = """
[[zones]]
id = "hall-1"
name = "第一办税厅"
site = "main"
"""

SERVICES = """
[[services]]
code = "tax-filing"
name = "申报纳税"
prefix = "A"

[[services]]
code = "invoice"
name = "发票办理"
prefix = "B"
"""

WINDOWS = """
[[windows]]
number = 1
zone = "hall-1"
all_services = true

[[windows]]
number = 2
zone = "hall-1"
skills = { invoice = 2.0 }
"""

WINDOW_AGENT = """
[[agents]]
id = "pi-w1"
role = "window"

[[agents.devices]]
id = "pad-1"
kind = "call_pad"
window = 1
serial = { port = "/dev/ttyUSB0", address = 1 }

[[agents.devices]]
id = "pad-2"
kind = "call_pad"
window = 2
serial = { port = "/dev/ttyUSB0", address = 2 }
"""

DISPENSER_AGENT = """
[[agents]]
id = "pi-d1"
role = "dispenser"

[[agents.devices]]
id = "keys-1"
kind = "keypad"
services = ["tax-filing", "invoice"]
serial = { port = "/dev/ttyUSB0" }
"""

BOARD_AGENT = """
[[agents]]
id = "pi-b1"
role = "board"

[[agents.devices]]
id = "board-1"
kind = "led_max7219"
spi = { port = 0, device = 0 }
led = { width = 64, height = 16 }
"""

AGENTS = WINDOW_AGENT + DISPENSER_AGENT + BOARD_AGENT

SECRET = "hunter2-very-secret-value"
HASH_KEY = "k3y-for-hmac-of-id-numbers-0123456789"


def hall_toml(
    *,
    hall: str = HALL,
    broker: str = "",
    zones: str = ZONES,
    services: str = SERVICES,
    windows: str = WINDOWS,
    agents: str = AGENTS,
) -> str:
    """A small valid hall; each test replaces or extends one section to break one thing."""
    return "\n".join([hall, broker, zones, services, windows, agents])


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml", environ=environ or {})
    assert str(info.value).startswith("test.toml: ")
    return info.value.problems


def assert_problem(problems: list[str], path: str, *fragments: str) -> None:
    hits = [p for p in problems if p.startswith(path) and all(f in p for f in fragments)]
    assert hits, f"no problem at {path!r} containing {fragments}; got:\n" + "\n".join(problems)


@pytest.fixture(autouse=True)
def _no_hallq_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_OVERRIDES:
        monkeypatch.delenv(var, raising=False)


# --- the example hall ---------------------------------------------------------------------


def test_liwan_example_matches_the_seed_hall() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.hall.id == "liwan"
    assert cfg.hall.timezone == "Asia/Shanghai"
    assert len(cfg.windows) == 47
    assert len(cfg.zones) == 4
    assert len({z.site for z in cfg.zones}) == 2
    assert sum(w.all_services for w in cfg.windows) == 24
    assert any(w.express for w in cfg.windows)
    assert [s.code for s in cfg.services if s.priority == "green"] == ["vat-green"]
    assert cfg.hall.open_hours[0][1] < cfg.hall.open_hours[1][0], "expected a lunch break"


def test_liwan_every_window_has_exactly_one_agent_with_a_call_pad() -> None:
    cfg = load_config(EXAMPLE)
    served = [w for a in cfg.agents for w in cfg.windows_for_agent(a.id)]
    assert sorted(served) == sorted(w.number for w in cfg.windows)
    roles = {a.role for a in cfg.agents}
    assert roles == {"window", "dispenser", "board"}


def test_liwan_weights_of_one_window_and_specialised_windows() -> None:
    cfg = load_config(EXAMPLE)
    one_window = cfg.window(1)
    assert one_window.all_services
    weights = one_window.weights()
    assert set(weights) == {s.code for s in cfg.services}
    assert weights["vat-green"] == 2.0
    assert weights["tax-filing"] == 1.0
    specialised = next(w for w in cfg.windows if not w.all_services and not w.express)
    assert specialised.weights() == specialised.skills


def test_minimal_config_defaults() -> None:
    cfg = parse_config(hall_toml(), environ={})
    assert cfg.broker.url == "mqtt://127.0.0.1:1883"
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.use_tls) == ("127.0.0.1", 1883, False)
    assert cfg.broker.protocol == "auto"
    assert cfg.broker.keepalive == 30
    assert cfg.hall.reset_time == time(0, 0)
    assert cfg.hall.open_hours == [(time(9), time(12)), (time(13, 30), time(17))]
    assert cfg.runtime.state_dir == Path("~/.local/state/hallq").expanduser()
    assert cfg.runtime.log_level == "INFO"
    assert cfg.security.id_hash_key is None
    assert cfg.service("invoice").width == 3
    assert cfg.window(2).weights() == {"invoice": 2.0}
    assert cfg.window(1).weights() == {"tax-filing": 1.0, "invoice": 1.0}


def test_liwan_example_holds_the_2026_calendar() -> None:
    hall = load_config(EXAMPLE).hall
    assert date(2026, 10, 1) in hall.closed_days
    assert date(2026, 2, 17) in hall.closed_days
    assert date(2026, 10, 10) in hall.extra_workdays
    assert all(d.weekday() >= 5 for d in hall.extra_workdays)
    assert hall.filing_deadlines["2026-10"] == 26
    assert hall.filing_deadlines["2026-02"] == 24
    assert hall.closed_days == sorted(hall.closed_days)


def test_the_hall_calendar_defaults_to_none() -> None:
    hall = parse_config(hall_toml(), environ={}).hall
    assert (hall.closed_days, hall.extra_workdays, hall.filing_deadlines) == ([], [], {})


def test_the_hall_calendar_takes_toml_dates_and_strings() -> None:
    hall = HALL + (
        'closed_days = [2026-10-02, "2026-10-01"]\nextra_workdays = ["2026-10-10"]\n'
        '[hall.filing_deadlines]\n"2026-10" = 26\n2026-02 = 24\n'
    )
    cfg = parse_config(hall_toml(hall=hall), environ={})
    assert cfg.hall.closed_days == [date(2026, 10, 1), date(2026, 10, 2)]
    assert cfg.hall.extra_workdays == [date(2026, 10, 10)]
    assert cfg.hall.filing_deadlines == {"2026-02": 24, "2026-10": 26}


def test_calendar_dates_that_do_not_parse_name_the_field_and_value() -> None:
    hall = HALL + (
        'closed_days = [2026-10-01, "2026-02-30", "1 Oct", 2026-10-01, 2026-10-03T09:00:00]\n'
        "extra_workdays = 20261010\n"
    )
    problems = problems_of(hall_toml(hall=hall))
    assert_problem(problems, "hall.closed_days[1]", "'2026-02-30' is not a calendar date")
    assert_problem(problems, "hall.closed_days[2]", "expected a date YYYY-MM-DD", "'1 Oct'")
    assert_problem(problems, "hall.closed_days[3]", "2026-10-01 is listed twice", "[0]")
    assert_problem(problems, "hall.closed_days[4]", "expected a date", "2026-10-03T09:00:00")
    assert_problem(problems, "hall.extra_workdays", "expected an array of dates", "20261010")


def test_an_extra_workday_must_be_a_weekend_day() -> None:
    hall = HALL + "extra_workdays = [2026-10-10, 2026-10-09]\n"
    assert_problem(
        problems_of(hall_toml(hall=hall)),
        "hall.extra_workdays[1]",
        "2026-10-09 is a Friday",
        "调休",
    )


def test_a_date_cannot_be_closed_and_an_extra_workday() -> None:
    hall = HALL + "closed_days = [2026-10-01, 2026-10-10]\nextra_workdays = [2026-10-10]\n"
    assert_problem(
        problems_of(hall_toml(hall=hall)),
        "hall.extra_workdays[0]",
        "2026-10-10 is also in hall.closed_days",
    )


def test_filing_deadlines_are_days_of_their_month() -> None:
    closed = 'closed_days = [2026-10-05]\nreset_time = "10:00"\n'
    hall = (
        HALL
        + closed
        + (
            '[hall.filing_deadlines]\n"2026-02" = 30\n"2026-13" = 15\n"2026-04" = "20"\n'
            '"Oct" = 26\n"2026-11" = 0\n'
        )
    )
    problems = problems_of(hall_toml(hall=hall))
    assert_problem(
        problems,
        "hall.filing_deadlines.2026-02",
        "between 1 and 28",
        "2026-02 has 28 days",
        "got 30",
    )
    assert_problem(problems, "hall.filing_deadlines.2026-13", 'a month "YYYY-MM"', "'2026-13'")
    assert_problem(problems, "hall.filing_deadlines.2026-04", "day of the month", "got '20'")
    assert_problem(problems, "hall.filing_deadlines.Oct", 'a month "YYYY-MM"')
    assert_problem(problems, "hall.filing_deadlines.2026-11", "between 1 and 30", "got 0")
    # a deadline on a closed day; the hall's cross-checks are reported together
    problems = problems_of(hall_toml(hall=HALL + closed + 'filing_deadlines = {"2026-10" = 5}\n'))
    assert_problem(problems, "hall.filing_deadlines.2026-10", "2026-10-05 is in hall.closed_days")
    assert_problem(problems, "hall.reset_time", "inside open hours")
    assert_problem(
        problems_of(hall_toml(hall=HALL + "filing_deadlines = 15\n")),
        "hall.filing_deadlines",
        "expected a table",
        "15",
    )


def test_mqtts_url_defaults_to_port_8883_and_tls() -> None:
    cfg = parse_config(hall_toml(broker='[broker]\nurl = "mqtts://mqtt.hall.lan"\n'), environ={})
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.use_tls) == ("mqtt.hall.lan", 8883, True)


def test_lookup_helpers_raise_keyerror_naming_the_unknown_thing() -> None:
    cfg = parse_config(hall_toml(), environ={})
    assert cfg.agent("pi-w1").role == "window"
    assert cfg.windows_for_agent("pi-w1") == [1, 2]
    assert cfg.windows_for_agent("pi-d1") == []
    with pytest.raises(KeyError, match=r"unknown service 'vat'.*known: tax-filing, invoice"):
        cfg.service("vat")
    with pytest.raises(KeyError, match="window 99 is not configured"):
        cfg.window(99)
    with pytest.raises(KeyError, match="unknown agent 'pi-x'"):
        cfg.agent("pi-x")
    with pytest.raises(KeyError, match="unknown agent 'pi-x'"):
        cfg.windows_for_agent("pi-x")


# --- each class of mistake names its key path ---------------------------------------------


def test_typo_in_a_key_is_rejected_with_a_suggestion() -> None:
    problems = problems_of(hall_toml(broker="[broker]\nkepalive = 30\n"))
    assert_problem(problems, "broker.kepalive (line 8): unknown key", "did you mean 'keepalive'?")


def test_typo_in_an_array_of_tables_entry() -> None:
    windows = WINDOWS.replace("skills = {", "skils = {")
    assert_problem(
        problems_of(hall_toml(windows=windows)), "windows[1].skils", "did you mean 'skills'"
    )


def test_wrong_type_says_what_was_expected_and_found() -> None:
    problems = problems_of(hall_toml(broker='[broker]\nkeepalive = "abc"\n'))
    assert "broker.keepalive (line 8): expected an integer between 5 and 600, got 'abc'" in problems


def test_out_of_range_integer() -> None:
    problems = problems_of(hall_toml(broker="[broker]\nkeepalive = 3\n"))
    assert "broker.keepalive (line 8): expected an integer between 5 and 600, got 3" in problems


def test_boolean_is_not_coerced_from_a_string() -> None:
    windows = WINDOWS.replace("all_services = true", 'all_services = "yes"')
    assert_problem(
        problems_of(hall_toml(windows=windows)), "windows[0].all_services", "true or false"
    )


def test_unknown_service_in_skills() -> None:
    windows = WINDOWS.replace("invoice = 2.0", "invoce = 2.0")
    assert_problem(
        problems_of(hall_toml(windows=windows)),
        "windows[1].skills.invoce",
        "unknown service 'invoce'",
        "known: tax-filing, invoice",
    )


def test_skill_weight_must_be_positive() -> None:
    windows = WINDOWS.replace("invoice = 2.0", "invoice = 0")
    assert_problem(problems_of(hall_toml(windows=windows)), "windows[1].skills.invoice", "got 0")


def test_window_serving_nothing() -> None:
    windows = WINDOWS.replace("skills = { invoice = 2.0 }", "")
    assert_problem(problems_of(hall_toml(windows=windows)), "windows[1].skills", "serves nothing")


def test_duplicate_window_number_names_the_window() -> None:
    windows = WINDOWS.replace("number = 2", "number = 1")
    assert_problem(
        problems_of(hall_toml(windows=windows)),
        "windows[1].number (window 1, line 32)",
        "duplicate window number 1",
    )


def test_window_in_unknown_zone() -> None:
    windows = WINDOWS.replace('zone = "hall-1"\nskills', 'zone = "hall-9"\nskills')
    assert_problem(
        problems_of(hall_toml(windows=windows)), "windows[1].zone", "unknown zone 'hall-9'"
    )


def test_duplicate_prefix() -> None:
    services = SERVICES.replace('prefix = "B"', 'prefix = "A"')
    assert_problem(
        problems_of(hall_toml(services=services)), "services[1].prefix", "duplicate prefix 'A'"
    )


def test_prefix_must_be_one_upper_case_letter() -> None:
    services = SERVICES.replace('prefix = "B"', 'prefix = "b"')
    assert_problem(
        problems_of(hall_toml(services=services)), "services[1].prefix", "A-Z", "got 'b'"
    )


def test_warn_at_must_be_below_daily_cap() -> None:
    services = SERVICES.replace('prefix = "B"', 'prefix = "B"\ndaily_cap = 100\nwarn_at = 100')
    assert_problem(
        problems_of(hall_toml(services=services)), "services[1].warn_at", "below daily_cap"
    )


def test_bad_priority_lists_the_choices() -> None:
    services = SERVICES.replace('prefix = "B"', 'prefix = "B"\npriority = "vip"')
    assert_problem(
        problems_of(hall_toml(services=services)), "services[1].priority", "'green'", "got 'vip'"
    )


def test_bad_time_zone() -> None:
    hall = HALL.replace("Asia/Shanghai", "Mars/Olympus")
    assert_problem(
        problems_of(hall_toml(hall=hall)), "hall.timezone", "unknown time zone 'Mars/Olympus'"
    )


def test_overlapping_open_hours() -> None:
    hall = HALL + 'open_hours = [["09:00", "12:30"], ["12:00", "17:00"]]\n'
    assert_problem(problems_of(hall_toml(hall=hall)), "hall.open_hours[1]", "before the previous")


def test_badly_written_time() -> None:
    hall = HALL + 'open_hours = [["9am", "12:00"]]\n'
    assert_problem(problems_of(hall_toml(hall=hall)), "hall.open_hours[0]", '"HH:MM"', "'9am'")


def test_reset_time_inside_open_hours() -> None:
    hall = HALL + 'reset_time = "10:00"\n'
    assert_problem(problems_of(hall_toml(hall=hall)), "hall.reset_time", "inside open hours")


@pytest.mark.parametrize("bad", ["a/b", "a+b", "#", "Liwan"])
def test_ids_that_cannot_be_topic_levels_are_rejected(bad: str) -> None:
    hall = HALL.replace('id = "test-hall"', f'id = "{bad}"')
    assert_problem(problems_of(hall_toml(hall=hall)), "hall.id", repr(bad), "not a valid id")


def test_agent_id_with_plus_names_the_agent_entry() -> None:
    agents = AGENTS.replace('id = "pi-w1"', 'id = "pi+w1"')
    assert_problem(problems_of(hall_toml(agents=agents)), "agents[0].id", "'pi+w1'")


def test_device_missing_serial() -> None:
    agents = WINDOW_AGENT.replace('serial = { port = "/dev/ttyUSB0", address = 1 }\n', "")
    assert_problem(
        problems_of(hall_toml(agents=agents)),
        "agents[0].devices[0].serial (agent pi-w1, device pad-1, line 41)",
        "required for a call_pad device",
    )


def test_device_field_its_kind_does_not_use() -> None:
    agents = WINDOW_AGENT + DISPENSER_AGENT + "spi = { port = 0 }\n" + BOARD_AGENT
    assert_problem(
        problems_of(hall_toml(agents=agents)), "agents[1].devices[0].spi", "not used by a keypad"
    )


def test_duplicate_rs485_address_on_one_port() -> None:
    agents = AGENTS.replace("address = 2", "address = 1")
    assert_problem(
        problems_of(hall_toml(agents=agents)),
        "agents[0].devices[1].serial.address",
        "duplicate RS-485 address 1 on /dev/ttyUSB0",
        "'pad-1'",
    )


def test_shared_port_needs_addresses() -> None:
    agents = AGENTS.replace(", address = 2", "")
    assert_problem(
        problems_of(hall_toml(agents=agents)), "agents[0].devices[1].serial.address", "required"
    )


def test_same_port_name_on_two_agents_is_two_buses() -> None:
    # /dev/ttyUSB0 exists on every Pi: the keypad alone on pi-d1's line needs no address.
    cfg = parse_config(hall_toml(), environ={})
    keypad = cfg.agent("pi-d1").devices[0]
    assert isinstance(keypad, KeypadDevice)
    assert (keypad.serial.port, keypad.serial.address) == ("/dev/ttyUSB0", None)


def test_network_serial_port_is_one_bus_across_agents() -> None:
    moxa = 'serial = { port = "socket://10.0.0.9:4001" }'
    agents = AGENTS.replace('serial = { port = "/dev/ttyUSB0" }', moxa)
    agents += f'\n[[agents.devices]]\nid = "board-2"\nkind = "led_serial"\n{moxa}\n'
    agents += "led = { width = 64, height = 16 }\n"
    assert_problem(
        problems_of(hall_toml(agents=agents)),
        "agents[2].devices[1].serial.address",
        "2 devices share socket://10.0.0.9:4001",
    )


def test_gpio_pin_taken_by_the_spi_bus() -> None:
    buttons = '\n[[agents.devices]]\nid = "btn-1"\nkind = "gpio_buttons"\nwindow = 1\n'
    strip = '\n[[agents.devices]]\nid = "strip-1"\nkind = "led_max7219"\nwindow = 1\n'
    strip += "spi = { port = 0, device = 0 }\nled = { width = 32, height = 8 }\n"
    agents = WINDOW_AGENT + buttons + "gpio = { call = 10 }\n" + strip + DISPENSER_AGENT
    assert_problem(
        problems_of(hall_toml(agents=agents)), "agents[0].devices[2].gpio.call", "SPI bus 0"
    )


def test_pad_for_an_unknown_window() -> None:
    agents = AGENTS.replace("window = 2", "window = 9")
    assert_problem(
        problems_of(hall_toml(agents=agents)),
        "agents[0].devices[1].window",
        "window 9 is not configured",
    )


def test_two_agents_acting_for_one_window() -> None:
    second = """
[[agents]]
id = "pi-w2"
role = "window"

[[agents.devices]]
id = "pad-1b"
kind = "call_pad"
window = 1
serial = { port = "/dev/ttyUSB0" }
"""
    assert_problem(
        problems_of(hall_toml(agents=WINDOW_AGENT + second)),
        "agents[1].devices[0].window",
        "already has pads on agent 'pi-w1'",
    )


def test_device_kind_not_allowed_for_role() -> None:
    speaker = '\n[[agents.devices]]\nid = "voice-1"\nkind = "speaker"\n'
    agents = WINDOW_AGENT + DISPENSER_AGENT + speaker + BOARD_AGENT
    problems = problems_of(hall_toml(agents=agents))
    assert_problem(problems, "agents[1].devices[1].kind", "dispenser agent cannot drive a speaker")


def test_duplicate_device_id_across_agents() -> None:
    agents = AGENTS.replace('id = "keys-1"', 'id = "pad-1"')
    assert_problem(
        problems_of(hall_toml(agents=agents)), "agents[1].devices[0].id", "duplicate device id"
    )


def test_gpio_pin_used_twice_on_one_agent() -> None:
    buttons = """
[[agents.devices]]
id = "btn-1"
kind = "gpio_buttons"
window = 1
gpio = { call = 17, recall = 27 }

[[agents.devices]]
id = "btn-2"
kind = "gpio_buttons"
window = 2
gpio = { call = 17 }
"""
    problems = problems_of(hall_toml(agents=WINDOW_AGENT + buttons + DISPENSER_AGENT + BOARD_AGENT))
    assert_problem(problems, "agents[0].devices[3].gpio.call", "BCM pin 17 is already used")


def test_led_size_must_be_a_multiple_of_8() -> None:
    agents = AGENTS.replace("width = 64", "width = 60")
    assert_problem(
        problems_of(hall_toml(agents=agents)), "agents[2].devices[0].led.width", "multiple of 8"
    )


def test_bad_broker_url_scheme() -> None:
    problems = problems_of(hall_toml(broker='[broker]\nurl = "http://mqtt.lan"\n'))
    assert_problem(problems, "broker.url", "mqtt:// or mqtts://", "'http://mqtt.lan'")


def test_client_cert_needs_its_key() -> None:
    broker = '[broker.tls]\ncert_file = "/etc/hallq/pi.crt"\n'
    assert_problem(
        problems_of(hall_toml(broker=broker)), "broker.tls.key_file", "cert_file and key_file"
    )


def test_password_and_password_file_are_exclusive() -> None:
    broker = f'[broker]\nusername = "pi"\npassword = "{SECRET}"\npassword_file = "/x"\n'
    problems = problems_of(hall_toml(broker=broker))
    assert_problem(problems, "broker.password_file", "either password or password_file")
    assert not any(SECRET in p for p in problems)


def test_all_problems_are_reported_at_once() -> None:
    hall = HALL.replace("Asia/Shanghai", "Nowhere/City")
    problems = problems_of(hall_toml(hall=hall, broker="[broker]\nkeepalive = 1\nbogus = 1\n"))
    assert len(problems) >= 3


def test_missing_required_section() -> None:
    assert_problem(problems_of(hall_toml(windows="")), "windows", "required")


# --- files --------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[hall]\nid = "x"\nname = \n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "TOML syntax error" in message


def test_a_file_cut_short_names_the_line_where_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "cut.toml"
    path.write_text('[hall]\nid = "x"\n[', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith("line 3, column 2: TOML syntax error")
    assert "the file ends there" in info.value.problems[0]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert "no such file" in str(info.value)
    assert str(path) in str(info.value)


def test_password_file_is_read_stripped_and_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "broker.pass").write_text(f"  {SECRET}\n", encoding="utf-8")
    path = tmp_path / "hall.toml"
    broker = '[broker]\nusername = "pi-w1"\npassword_file = "broker.pass"\n'
    path.write_text(hall_toml(broker=broker), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == SECRET
    assert cfg.broker.password_file == tmp_path / "broker.pass"


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    broker = f'[broker]\nusername = "pi"\npassword_file = "{tmp_path / "missing.pass"}"\n'
    assert_problem(problems_of(hall_toml(broker=broker)), "broker.password_file", "cannot read")


# --- environment overrides ----------------------------------------------------------------


def test_env_overrides_secrets_and_deploy_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HALLQ_BROKER_URL", "mqtts://broker.liwan.lan:8884")
    monkeypatch.setenv("HALLQ_BROKER_USERNAME", "pi-w1")
    monkeypatch.setenv("HALLQ_BROKER_PASSWORD", SECRET)
    monkeypatch.setenv("HALLQ_ID_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("HALLQ_STATE_DIR", str(tmp_path / "state"))
    cfg = parse_config(hall_toml(broker='[broker]\nurl = "mqtt://10.0.0.1"\n'))
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.use_tls) == (
        "broker.liwan.lan",
        8884,
        True,
    )
    assert cfg.broker.username == "pi-w1"
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == SECRET
    assert cfg.security.id_hash_key is not None
    assert cfg.security.id_hash_key.get_secret_value() == HASH_KEY
    assert cfg.runtime.state_dir == tmp_path / "state"


def test_env_password_replaces_a_password_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALLQ_BROKER_PASSWORD", SECRET)
    broker = '[broker]\nusername = "pi"\npassword_file = "/does/not/exist"\n'
    cfg = parse_config(hall_toml(broker=broker))
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == SECRET


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALLQ_BROKER_URL", "tcp://broker:1883")
    with pytest.raises(ConfigError) as info:
        parse_config(hall_toml(), "hall.toml")
    assert_problem(info.value.problems, "broker.url (from HALLQ_BROKER_URL)", "mqtt://")


def test_short_hash_key_from_env_is_rejected_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HALLQ_ID_HASH_KEY", "short-key")
    with pytest.raises(ConfigError) as info:
        parse_config(hall_toml())
    assert_problem(info.value.problems, "security.id_hash_key (from HALLQ_ID_HASH_KEY)", "16")
    assert "short-key" not in str(info.value)


def test_empty_env_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALLQ_BROKER_USERNAME", "")
    with pytest.raises(ConfigError) as info:
        parse_config(hall_toml())
    assert_problem(info.value.problems, "broker.username (from HALLQ_BROKER_USERNAME)", "empty")


# --- secrets stay secret ------------------------------------------------------------------


def _secret_config(monkeypatch: pytest.MonkeyPatch) -> HallConfig:
    monkeypatch.setenv("HALLQ_BROKER_USERNAME", "pi-w1")
    monkeypatch.setenv("HALLQ_BROKER_PASSWORD", SECRET)
    monkeypatch.setenv("HALLQ_ID_HASH_KEY", HASH_KEY)
    return parse_config(hall_toml())


def test_secrets_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _secret_config(monkeypatch)
    for text in (repr(cfg), str(cfg), repr(cfg.broker), cfg.model_dump_json()):
        assert SECRET not in text
        assert HASH_KEY not in text


def test_summary_shows_set_not_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _secret_config(monkeypatch)
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(render_summary(cfg))
    out = console.export_text()
    assert SECRET not in out
    assert HASH_KEY not in out
    assert "password set" in out
    assert "ID hash key set" in out
    assert "test-hall" in out
    assert "tax-filing" in out
    assert "pi-w1" in out


def test_secret_of_the_wrong_type_is_not_echoed() -> None:
    problems = problems_of(hall_toml(broker='[broker]\nusername = "pi"\npassword = 12345678\n'))
    assert_problem(problems, "broker.password", "expected a string")
    assert not any("12345678" in p for p in problems)


def test_credentials_in_the_url_are_refused_without_echo() -> None:
    problems = problems_of(hall_toml(broker=f'[broker]\nurl = "mqtt://pi:{SECRET}@broker"\n'))
    assert_problem(problems, "broker.url", "credentials")
    assert not any(SECRET in p for p in problems)


# --- hallq config check -------------------------------------------------------------------


def test_cli_check_good_file_prints_summary() -> None:
    result = CliRunner().invoke(main, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "liwan" in result.stdout
    assert "47" in result.stdout
    assert "24" in result.stdout
    assert "vat-green" in result.stdout
    flat = " ".join(result.stdout.split())  # the console wraps at 80 columns
    assert "calendar: 33 closed days (2026-01-01 to 2026-10-07)" in flat
    assert "6 extra working days (调休)" in flat
    assert "2026-10-26" in flat


def test_summary_mentions_the_calendar_only_when_set() -> None:
    def summary(hall: str) -> str:
        console = Console(file=io.StringIO(), width=200, record=True)
        console.print(render_summary(parse_config(hall_toml(hall=hall), environ={})))
        return console.export_text()

    assert "calendar" not in summary(HALL)
    text = summary(HALL + 'extra_workdays = [2026-10-10]\nfiling_deadlines = {"2026-10" = 26}\n')
    assert "calendar: 1 extra working days (调休): 2026-10-10; filing deadlines" in text
    assert "2026-10-26" in text
    assert "closed days" not in text


def test_cli_check_bad_file_exits_1_with_the_problem_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(hall_toml(broker="[broker]\nkeepalive = 1\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "broker.keepalive" in result.stderr
    assert "Traceback" not in result.output


def test_cli_check_missing_file_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "check", str(tmp_path / "none.toml")])
    assert result.exit_code == 1
    assert "no such file" in result.stderr


def test_summary_warns_that_booking_needs_the_id_hash_key() -> None:
    def summary(environ: dict[str, str]) -> str:
        console = Console(file=io.StringIO(), width=200, record=True)
        console.print(render_summary(parse_config(hall_toml(), environ=environ)))
        return console.export_text()

    assert "taxpayers cannot book appointments" in summary({})
    assert "cannot book appointments" not in summary({"HALLQ_ID_HASH_KEY": HASH_KEY})


def test_summary_warns_when_leases_can_take_a_service_s_numbers() -> None:
    """Each dispenser may hold edge.lease_cap leased numbers of a service (110 by default):
    at two digits, or with a daily cap close to the width, online issuing would end early
    with numbers_exhausted."""

    def summary(services: str) -> str:
        console = Console(file=io.StringIO(), width=300, record=True)
        console.print(render_summary(parse_config(hall_toml(services=services), environ={})))
        return console.export_text()

    assert "leased numbers" not in summary(SERVICES)
    narrow = SERVICES.replace('prefix = "B"', 'prefix = "B"\nwidth = 2')
    said = summary(narrow)
    assert "service invoice: 1 dispenser(s) may hold 110 leased numbers" in said, said
    assert "more than 2 digits give (99)" in said
    capped = SERVICES.replace('prefix = "B"', 'prefix = "B"\ndaily_cap = 900')
    assert "and its daily cap is 900" in summary(capped)


def test_a_whole_hall_board_in_a_hall_of_two_buildings_says_which_it_stands_in() -> None:
    """The main building's zone-less board showed the branch's calls (found by a
    supervisor): where a hall has several sites, its agent names its own."""
    liwan = Path(__file__).parents[1] / "examples" / "liwan.toml"
    text = liwan.read_text(encoding="utf-8")
    line = 'site = "main"  # its whole-hall board shows this 办税点\'s calls and waiting only\n'
    assert line in text
    with pytest.raises(ConfigError) as caught:
        parse_config(text.replace(line, ""), "liwan.toml")
    (problem,) = caught.value.problems
    assert problem.startswith("agents[14].site (agent pi-b01, line ")
    assert "give board-main a zone" in problem
    with pytest.raises(ConfigError, match="only a dispenser's tickets and a board agent's"):
        parse_config(text.replace('role = "window"\n', 'role = "window"\nsite = "main"\n', 1), "x")
