"""What ``meshd up`` and ``meshd join`` do once their options are read: the same for the
quick path and typer's.

:func:`prepare` turns ``up``'s settled values (the command line over the environment over the
config file over the defaults: meshd.cli.configfile) into the daemon's
:class:`~meshd.daemon.config.DaemonConfig`; :func:`run` sets up the log and runs the daemon.
:func:`prepare_join` and :func:`run_join` do the same for ``join``: its configuration, then
the invite read (``-``, ``@FILE``), the join, and the daemon unless ``--no-up``. The quick
path (meshd.cli.quick_up) and the typer commands (meshd.cli.daemon_cmds ``up``, ``join``) both
call them, so the configuration and what follows cannot differ between the two.

No typer here, and nothing heavy at import: the daemon's modules are imported inside.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshd.cli.parse import duration, read_secret_argument
from meshd.node.layout import resolve

if TYPE_CHECKING:
    from meshd.babel.options import BabelConfig
    from meshd.daemon.config import DaemonConfig


@dataclass(frozen=True, slots=True)
class Up:
    """What ``meshd up`` runs with."""

    config: DaemonConfig
    """Without ``--metrics``, which :func:`run` adds after the log is set up."""
    metrics: str | None
    log_level: str
    log_format: str
    config_file: Path | None
    options: Mapping[str, Any] | None = None
    """The settled values it was made from, which a SIGHUP compares a fresh read with
    (meshd.daemon.reload)."""


def prepare(values: Mapping[str, Any]) -> Up:
    """``up``'s settled values (by parameter name) as what it runs with; UsageError (a
    CommandLineError) for a value that means nothing (a duration, a Babel key, ...)."""
    from meshd.babel.options import babel_config

    config = _daemon_config(
        values,
        babel_config(
            values["babel_interface"] or (),
            values["babel_hello_interval"],
            values["babel_originate"] or (),
            values["babel_key"] or (),
            values["babel_redistribute"] or (),
        ),
    )
    config = renewing(config, values["auto_renew"], values["renew_window"], values["renew_for"])
    config = reaching(config, values["relay"], values["public_addr"], values["bootstrap"])
    return Up(
        config=config,
        metrics=values["metrics"],
        log_level=values["log_level"],
        log_format=values["log_format"],
        config_file=values["config_file"],
        options=dict(values),
    )


def _daemon_config(values: Mapping[str, Any], babel: BabelConfig) -> DaemonConfig:
    """The options ``up`` and ``join`` share, as a DaemonConfig with ``babel``."""
    return daemon_config(
        values["state_dir"],
        values["listen"],
        values["wg_backend"],
        values["announce_interval"],
        values["announce_ttl"],
        values["degree"],
        (values["interface"], values["listen_port"], values["endpoint"], values["mtu"]),
        babel,
    )


def run(up: Up) -> None:
    """Set up the log, then run the daemon until stopped (meshd.daemon.reexec.run_daemon).

    A process started as ``meshd up`` whose parse loaded pydantic (typer's) hands the
    configuration to a fresh interpreter first (meshd.daemon.reexec); the quick path never
    loads it, and runs the daemon in this interpreter.
    """
    from meshd.cli import logs
    from meshd.daemon import reexec

    logs.configure(up.log_level, up.log_format, config_file=up.config_file)
    config = with_metrics(up.config, up.metrics)
    if reexec.started_as_up() and "pydantic" in sys.modules:
        reexec.replace_process(config, up.log_level, up.log_format)  # returns if it cannot
        # Typer's parse: a command line the quick reader cannot read again at a SIGHUP.
        reexec.run_daemon(config)
        return
    reexec.run_daemon(config, up.options)  # the state dir's checks, then the daemon


@dataclass(frozen=True, slots=True)
class Join:
    """What ``meshd join`` runs with."""

    invite: str
    """As given: the token itself, ``-`` (stdin) or ``@FILE``; read by :func:`run_join`."""
    name: str
    no_up: bool
    config: DaemonConfig
    """With ``--metrics``, tried before a use of the invite is spent."""
    log_level: str
    log_format: str
    config_file: Path | None


def prepare_join(values: Mapping[str, Any]) -> Join:
    """``join``'s settled values (by parameter name) as what it runs with; UsageError for a
    value that means nothing. The invite is not read here: a command refused for its options
    has read nothing from stdin."""
    from meshd.babel.options import babel_config

    config = _daemon_config(values, babel_config(hello_interval=values["babel_hello_interval"]))
    config = reaching(config, values["relay"], values["public_addr"], values["bootstrap"])
    return Join(
        invite=values["invite"],
        name=values["name"],
        no_up=values["no_up"],
        config=with_metrics(config, values["metrics"]),
        log_level=values["log_level"],
        log_format=values["log_format"],
        config_file=values["config_file"],
    )


def run_join(join: Join) -> None:
    """Read the invite, join (the state dir as it was if that fails), then run the daemon in
    this interpreter until stopped, unless ``--no-up``."""
    from functools import partial

    import trio

    from meshd.cli import logs
    from meshd.cli.output import note
    from meshd.daemon.join import join as join_network
    from meshd.daemon.launch import run_until_signalled
    from meshd.daemon.lifecycle import interruptible
    from meshd.daemon.startup import preflight, quiet_libp2p, rollback

    invite = read_secret_argument(join.invite, "--invite")
    config = join.config
    logs.configure(join.log_level, join.log_format, quiet=True)

    async def main() -> int | None:
        if not join.no_up:
            await preflight(config)
        with rollback(config.state_dir), quiet_libp2p():  # a failed join: one line, and
            node = await interruptible(  # the state dir as it was
                partial(join_network, invite, name=join.name, config=config, progress=note)
            )
        try:
            if not join.no_up:
                logs.configure(join.log_level, join.log_format, config_file=join.config_file)
                return await run_until_signalled(config, node)
        finally:
            node.close()
        return None

    stopped_by(trio.run(main))


def stopped_by(signum: int | None) -> None:
    """Ctrl-C (SIGINT) ends the command as interrupted (exit 130), SIGTERM as a success."""
    import signal

    if signum == signal.SIGINT:
        raise KeyboardInterrupt


# -- the pieces ----------------------------------------------------


def daemon_config(
    state_dir: Path | None,
    listen: list[str] | None,
    wg_backend: str,
    announce_interval: str,
    announce_ttl: str,
    degree: int,
    wireguard: tuple[str, int, list[str] | None, int | None],
    babel: BabelConfig | None = None,
) -> DaemonConfig:
    from meshd.babel.options import BabelConfig
    from meshd.daemon.config import DEFAULT_LISTEN, DaemonConfig

    interface, listen_port, endpoints, mtu = wireguard
    return DaemonConfig(
        state_dir=resolve(state_dir),
        listen=tuple(listen or DEFAULT_LISTEN),
        wg_backend=wg_backend,
        interface=interface,
        listen_port=listen_port,
        mtu=mtu,
        endpoints=tuple(endpoints or ()),
        announce_interval=duration(announce_interval, option="--announce-interval"),
        announce_ttl=duration(announce_ttl, option="--announce-ttl"),
        degree=degree,
        babel=babel or BabelConfig(),
    )


def renewing(config: DaemonConfig, auto_renew: bool, window: str, period: str) -> DaemonConfig:
    """``config`` with ``--auto-renew``, ``--renew-window`` and ``--renew-for``."""
    return dataclasses.replace(
        config,
        auto_renew=auto_renew,
        renew_window=duration(window, option="--renew-window"),
        renew_for=duration(period, option="--renew-for"),
    )


def reaching(
    config: DaemonConfig,
    relay: str,
    public_addr: list[str] | None,
    bootstrap: list[str] | None = None,
) -> DaemonConfig:
    """``config`` with ``--relay``, ``--public-addr`` and ``--bootstrap`` (checked there)."""
    return dataclasses.replace(
        config,
        relay=relay,
        public_addrs=tuple(public_addr or ()),
        bootstrap=tuple(bootstrap or ()),
    )


def with_metrics(config: DaemonConfig, metrics: str | None) -> DaemonConfig:
    """``config`` with ``--metrics``, whose address is tried with the other start-up checks
    (meshd.daemon.startup.check_metrics): after the state dir's lock, before the daemon
    starts, and before ``join`` spends a use of the invite."""
    return dataclasses.replace(config, metrics=metrics or None)
