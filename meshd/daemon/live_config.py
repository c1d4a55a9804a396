"""What a SIGHUP changes in the running services besides the log (meshd.daemon.reload).

Options the daemon takes while it runs, each where a restart would cost a gateway its routes
for seconds or drop every member's sessions:

* ``babel_originate``: a prefix no longer listed is withdrawn at once (a retraction goes to
  every neighbour), a new one originated; one our certificate does not grant refuses the
  whole reload, as it refuses a start;
* ``babel_redistribute``: the site routes that cross follow at once, and every route goes
  again on the site links, as an update or a retraction (:meth:`BabelCore.refilter`);
* ``babel_key``: the site links' RFC 8967 keys, as a key rollover (the counters and what
  is known of each neighbour kept: add the new key everywhere, then drop the old one);
* ``endpoint``: announced in place of the old ones at once (and ``--relay auto`` decided
  again: a configured endpoint is a public one);
* ``relay``: decided again at once (IP forwarding follows);
* ``public_addr``: what invites carry from now on;
* ``bootstrap``: what a node that lost every member dials, from its next dial;
* ``metrics``: the endpoint turned on, moved or turned off; an address that cannot be
  bound refuses the whole reload, the endpoint as it was;
* ``degree``: how many members the connections service keeps connected, from its next
  look (members over it are not dropped for it: they go as their connections end).
* ``mtu``: the WireGuard interface's MTU set at once, or derived from the underlay again
  when the option is gone (sessions kept); Babel's datagrams on the mesh follow. The kernel
  refusing it refuses the whole reload;
* ``announce_interval``: when our next refresh is due, from the last one (one already
  overdue under a shorter interval goes at once);
* ``announce_ttl``: the silence after which a member expires; every member is judged again
  at once (a member silent for longer than a shorter limit expires, one within a longer
  limit is admitted again);
* ``auto_renew``, ``renew_window``, ``renew_for``: renewal turned on (it needs a key that
  may renew here, or the whole reload is refused, as a start is) or off; new terms run the
  day's renewal again at once (meshd.daemon.renew_slot).

The Babel options wait for a restart on a daemon without Babel (no WireGuard backend and no
``--babel-interface``). Every other option waits for a restart (meshd.daemon.reload names
them). :func:`taken` is pure; :func:`take` runs in the daemon's event loop thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.service import Daemon

log = logging.getLogger(__name__)

#: The options a running daemon takes on a SIGHUP (besides the log's, meshd.daemon.reload).
LIVE: Final = (
    "announce_interval", "announce_ttl", "auto_renew", "babel_hello_interval",
    "babel_interface", "babel_key", "babel_originate", "babel_redistribute", "degree",
    "bootstrap", "endpoint", "listen_port", "metrics", "mtu", "public_addr", "relay",
    "renew_for", "renew_window",
)  # fmt: skip
_RENEW: Final = frozenset({"auto_renew", "renew_for", "renew_window"})
_BABEL: Final = frozenset({
    "babel_hello_interval", "babel_interface", "babel_key", "babel_originate",
    "babel_redistribute",
})  # fmt: skip


def taken(old: DaemonConfig, new: DaemonConfig, keys: Collection[str]) -> DaemonConfig:
    """``old`` with the options ``keys`` name as ``new`` has them, nothing else (pure)."""
    babel = old.babel
    if "babel_originate" in keys:
        babel = dataclasses.replace(babel, originate=new.babel.originate)
    if "babel_redistribute" in keys:
        babel = dataclasses.replace(babel, redistribute=new.babel.redistribute)
    if "babel_key" in keys:
        babel = dataclasses.replace(babel, keys=new.babel.keys)
    if "babel_interface" in keys:
        babel = dataclasses.replace(babel, interfaces=new.babel.interfaces)
    if "babel_hello_interval" in keys:
        babel = dataclasses.replace(babel, hello_interval=new.babel.hello_interval)
    fields: dict[str, object] = {"babel": babel}
    if "endpoint" in keys:
        fields["endpoints"] = new.endpoints
    if "relay" in keys:
        fields["relay"] = new.relay
    if "public_addr" in keys:
        fields["public_addrs"] = new.public_addrs
    if "bootstrap" in keys:
        fields["bootstrap"] = new.bootstrap
    if "metrics" in keys:
        fields["metrics"] = new.metrics
    if "degree" in keys:
        fields["degree"] = new.degree
    lifecycle = ("announce_interval", "announce_ttl", "auto_renew", "renew_window", "renew_for")
    for key in (*lifecycle, "mtu", "listen_port"):
        if key in keys:
            fields[key] = getattr(new, key)
    return dataclasses.replace(old, **fields)  # type: ignore[arg-type]


async def take(daemon: Daemon, new: DaemonConfig, keys: Collection[str]) -> tuple[str, ...]:
    """Give the running services the options ``keys`` names (those of :data:`LIVE`) as
    ``new`` has them; the keys taken. A one-line error, before anything changes, for a
    value the running daemon refuses (a prefix not ours to originate, a metrics address
    it cannot listen on)."""
    wanted = [k for k in LIVE if k in keys]
    babel = daemon.babel
    if daemon.metrics is None:
        wanted = [k for k in wanted if k != "metrics"]  # not running yet
    if babel is None:
        wanted = [k for k in wanted if k not in _BABEL]  # Babel starts with the daemon
    else:
        if "babel_originate" in wanted:
            from meshd.daemon.babel_site import refuse_ungranted

            refuse_ungranted(babel.ungranted(new.babel))  # as a start refuses them
        if "babel_interface" in wanted:
            await refuse_missing_links(new.babel.interfaces)
    if _RENEW & set(wanted):
        daemon.renewal.check(new)  # as a start refuses it: no key that may renew here
    device = daemon.mesh.kind != "none"
    if not device:
        wanted = [k for k in wanted if k != "mtu"]  # no interface: its next start's
    if not wanted:
        return ()
    import trio

    from meshd.daemon.wireguard_open import set_link_mtu

    was_mtu, was_port = daemon.mesh.mtu, daemon.mesh.listen_port
    if "listen_port" in wanted and device:  # a port in use: nothing changed yet
        from meshd.daemon.startup import check_udp_port

        check_udp_port(new.listen_port)
    if "mtu" in wanted:  # refused by the kernel: nothing changed yet
        daemon.mesh.mtu = await set_link_mtu(daemon.mesh.ifname, new.mtu)
    try:
        if "listen_port" in wanted and device:
            await daemon.mesh.set_listen_port(new.listen_port)
        if "metrics" in wanted and daemon.metrics is not None:
            await daemon.metrics.move(new.metrics)  # the last that may refuse: it undoes itself
    except BaseException:
        with trio.CancelScope(shield=True):  # the port and the MTU as they were, too
            if daemon.mesh.listen_port != was_port:
                await daemon.mesh.set_listen_port(was_port)
            if daemon.mesh.mtu != was_mtu:
                daemon.mesh.mtu = await set_link_mtu(daemon.mesh.ifname, was_mtu)
        raise
    config = taken(daemon.config, new, wanted)
    daemon.config = config
    if "endpoint" in wanted:
        daemon.endpoints.set_configured(config.endpoints)
    if "listen_port" in wanted:
        daemon.endpoints.set_listen_port(config.listen_port)
    if "degree" in wanted:
        daemon.connections.policy.degree = config.degree
    if "bootstrap" in wanted:
        daemon.connections.policy.rejoin.bootstrap = daemon.bootstrap_targets(config)
    if _RENEW & set(wanted):
        daemon.renewal.reconfigure(config)
    if "announce_ttl" in wanted:
        daemon.state.membership.set_announce_ttl(config.announce_ttl)
        daemon.state.tick()  # every member judged again now, not at the next tick
    if daemon.relaying is not None and {"relay", "endpoint"} & set(wanted):
        daemon.relaying.reconfigure(config)
    if babel is not None and _BABEL & set(wanted):
        babel.reconfigure(config.babel)  # new links or Hellos: Babel starts again
    if "babel_hello_interval" in wanted:
        daemon.punching.set_hello_interval(config.babel.hello_interval)
    if babel is not None and "mtu" in wanted:
        babel.set_mesh_mtu(daemon.mesh.mtu)
    if "public_addr" in wanted and config.public_addrs:
        # For `meshd invite` while the daemon is down too, as a start keeps it.
        daemon.state.node.store.set_meta("public_addrs", "\n".join(config.public_addrs).encode())
    # Last: the new endpoints announced now, not at the next look.
    daemon.announcer.reconfigure(config)
    return tuple(wanted)


async def refuse_missing_links(names: Collection[str]) -> None:
    """UsageError (one line) naming the ``babel_interface`` links this host does not have
    (a SIGHUP's: Babel would start again without them); nothing if it has them all."""
    import trio

    from meshd.errors import UsageError
    from meshd.wg.rtnl_socket import RtnlSocket

    def missing() -> list[str]:
        with RtnlSocket() as rtnl:
            return [name for name in names if rtnl.link(name) is None]

    gone = await trio.to_thread.run_sync(missing)
    if gone:
        raise UsageError(
            f"babel_interface {', '.join(gone)}: no such network interface here",
            hint="create it first, or take it out of the config file",
        )
