"""The ``hallq`` command: every subcommand wires components together here, nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from hallq import __version__
from hallq.errors import ConfigError

if TYPE_CHECKING:
    from hallq.config import HallConfig


def _version_text() -> str:
    return f"hallq {__version__}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(message="%(version)s", version=_version_text(), prog_name="hallq")
def main() -> None:
    """hallq: queue management for public service halls."""


@main.group()
def config() -> None:
    """Check hall configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE (with HALLQ_* overrides applied) and summarise the hall it describes."""
    from rich.console import Console

    from hallq.config_summary import render_summary

    Console().print(render_summary(_load(file)))


def _load(file: Path) -> HallConfig:
    from hallq.config import load_config

    try:
        return load_config(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None


config_option = click.option(
    "--config", "config_file", required=True, type=click.Path(path_type=Path),
    help="the hall's TOML file",
)


@main.command()
@config_option
def topics(config_file: Path) -> None:
    """List the hall's MQTT topics: who publishes each, QoS, retained, payload."""
    from rich.console import Console
    from rich.table import Table

    from hallq.contract import ALL_TOPICS

    hall = _load(config_file).hall.id
    table = Table(title=f"MQTT topics of hall {hall} (details: mqtt_topics.md)")
    table.add_column("topic", no_wrap=True)
    for column in ("publisher", "subscribers", "QoS", "retained", "payload"):
        table.add_column(column)
    for spec in ALL_TOPICS:
        table.add_row(
            spec.pattern.replace("{hall}", hall), spec.publisher, spec.subscribers,
            str(spec.qos), "yes" if spec.retained else "no", spec.payload_name,
        )
    console = Console()
    console.print(table)
    console.print(f"watch everything: mosquitto_sub -v -t 'hallq/v1/{hall}/#'")


@main.command()
@config_option
@click.option("--coordinator-user", "users", multiple=True, default=["coordinator"],
              show_default=True, help="MQTT user(s) of the coordinator (full access)")
def acl(config_file: Path, users: tuple[str, ...]) -> None:
    """Print a Mosquitto acl_file that confines each device to its own topic level."""
    from hallq.acl import mosquitto_acl
    from hallq.errors import TopicError

    hall = _load(config_file).hall.id
    try:
        click.echo(mosquitto_acl(list(users), hall=hall), nl=False)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="--coordinator-user") from None
