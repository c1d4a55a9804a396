"""Joining a network with an invite token: keys, enrollment, admission, first sync.

The state dir gets its keys first (kept if a join fails, so a retry is the same node) and
its store only once this node is admitted: a failed join leaves no half-made node behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from meshd.daemon.config import DaemonConfig, topic_of
from meshd.daemon.ingest import check_sync_records
from meshd.daemon.streams import converse, request_admission
from meshd.daemon.wireguard_open import local_addresses
from meshd.errors import DecodeError, MeshdError, UsageError, VerifyError
from meshd.gossip import enroll as enroll_protocol
from meshd.gossip import sync as sync_protocol
from meshd.gossip.host import GossipHost, HostConfig
from meshd.membership import Change, Membership, MemberState
from meshd.mesh.underlay import underlay_of
from meshd.node.layout import Paths
from meshd.node.statedir import NodeDir, create_identity, now
from meshd.node.store import Store, seal_key_of
from meshd.records import Admission
from meshd.trust.invites import anchor_of, decode_token_untrusted, enroll
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, WireGuardKey, fingerprint

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class JoinError(MeshdError):
    """Joining failed: no bootstrap reachable, or the sponsor's decision is not standing."""


@dataclass(frozen=True, slots=True)
class Joined:
    name: str
    node_id: str
    overlay_ip: str
    sponsor: str
    records: int


def _identity(paths: Paths) -> tuple[SigningKey, WireGuardKey]:
    """This node's keys: those a failed join left behind, or new ones."""
    if paths.node_key.exists() and paths.wg_key.exists():
        return SigningKey(read_secret(paths.node_key)), WireGuardKey(read_secret(paths.wg_key))
    return create_identity(paths)


def _reject_all(data: bytes, author: str, forwarder: str) -> bool:
    return False


async def join(
    token: str,
    *,
    name: str,
    config: DaemonConfig,
    progress: Progress,
) -> NodeDir:
    """Redeem ``token`` and return the new node's opened state dir."""
    paths = Paths(config.state_dir)
    if paths.db.exists():
        raise UsageError(
            f"{paths.root} already holds a meshd node",
            hint="run `meshd up` for it, or join with another --state-dir",
        )
    try:
        invite = decode_token_untrusted(token)
        anchor = anchor_of(invite)
    except (DecodeError, VerifyError) as exc:
        raise UsageError(f"the invite token is unusable: {exc}") from None
    addrs = [*config.bootstrap, *(a for a in invite.bootstrap if a not in config.bootstrap)]
    if not addrs:
        raise UsageError(
            "the invite names no bootstrap address",
            hint="give `meshd join --bootstrap MULTIADDR` of a running member, or ask for a "
            "token made while the inviting daemon runs",
        )
    name = name or invite.certificate.name
    if not name:
        raise UsageError("the invite names no member; give --name")
    node_key, wg_key = _identity(paths)
    enrollment = enroll(
        invite, node_key=node_key.public, wg_key=wg_key.public, name=name, now=now()
    )
    state = Membership(anchor, announce_ttl=config.announce_ttl)
    changes: list[Change] = []
    # The joining host only dials out; the daemon that follows listens where it is told.
    cfg = HostConfig(
        identity_seed=node_key.seed,
        listen_addrs=("/ip4/127.0.0.1/tcp/0",),
        topic=topic_of(fingerprint(anchor.root_key)),
        stream_timeout=config.stream_timeout,
        dial_timeout=config.dial_timeout,
        shutdown_timeout=config.shutdown_timeout,
    )
    progress(f"contacting {len(addrs)} bootstrap address(es)")
    # Those on a network of ours first: from the inviter's own LAN its public address may
    # never answer (a NAT that does not hairpin), its LAN address at once.
    on_link = underlay_of(await local_addresses(), exclude=[config.interface, "lo"]).networks
    async with GossipHost(cfg, _reject_all) as host:
        results = await host.connect_any(addrs, on_link)
        reachable = [r for r in results if r.ok and r.peer_id]
        if not reachable:
            tried = "; ".join(f"{r.addr} ({r.error})" for r in results)
            raise JoinError(
                f"no bootstrap address is reachable; tried: {tried}",
                hint="check that a member's daemon runs there, or ask for a fresh token",
            )

        async def ingest(raws: Sequence[bytes]) -> int:
            checked = await check_sync_records(raws)
            batch = state.merge_batch(
                checked.records,
                now(),
                announcements_checked=checked.announcements_checked,
                rejected=checked.rejected,
            )
            changes.append(batch)
            return batch.new

        async def fetch(peer: str) -> bool:
            """One sync with ``peer``: the membership as it knows it. False if it failed."""
            try:
                stream = await host.open_stream(peer, sync_protocol.PROTOCOL_ID)
                with trio.fail_after(config.stream_timeout * 6):
                    await converse(stream, sync_protocol.SyncSession(state), ingest, initiator=True)
                await stream.close()
            except (MeshdError, trio.TooSlowError) as exc:
                log.debug("sync with %s: %s", peer, exc)
                return False
            return True

        # Members serve sync to peers they do not know yet, so the membership is fetched while
        # the enrollment is decided (each costs a few round trips); if that sync fails, the
        # sponsor is asked again afterwards. Our own admission is merged in below either way.
        fetched = False

        async def prefetch(peer: str) -> None:
            nonlocal fetched
            fetched = await fetch(peer)

        admission: Admission | None = None
        sponsor_peer = ""
        last_error: MeshdError | None = None
        refusal: VerifyError | None = None
        async with trio.open_nursery() as nursery:
            assert reachable[0].peer_id is not None
            nursery.start_soon(prefetch, reachable[0].peer_id)
            for result in reachable:
                assert result.peer_id is not None
                progress(f"contacting {result.peer_id[:16]}... at {result.addr}")
                try:
                    stream = await host.open_stream(result.peer_id, enroll_protocol.PROTOCOL_ID)
                    try:
                        admission = await request_admission(stream, enrollment)
                    finally:
                        await stream.close()
                except VerifyError as exc:
                    # The sponsor decided: expired, used up, revoked, wrong network... Raised
                    # below, outside the nursery, as itself.
                    refusal = exc
                    break
                except MeshdError as exc:
                    last_error = exc
                    continue
                sponsor_peer = result.peer_id
                break
            if admission is None:
                nursery.cancel_scope.cancel()
        if refusal is not None:
            raise refusal
        if admission is None:
            raise JoinError(f"no bootstrap node answered the enrollment: {last_error}")
        # Our clock against the sponsor's, as it dated the admission a moment ago.
        ahead = now() - admission.admitted_at
        progress(f"enrolled by {fingerprint(admission.sponsor)[:10]}; fetching the membership")
        if not fetched and not await fetch(sponsor_peer):
            raise JoinError("the sponsor admitted us but the membership could not be fetched")
    with contextlib.suppress(VerifyError):  # usually the sync brought it already
        changes.append(state.ingest(admission, now()))
    me = state.member(node_key.public, now())
    if me is None or me.state is not MemberState.ADMITTED:
        if ahead < -state.clock_skew:
            raise JoinError(
                f"this machine's clock is {-ahead} s behind the sponsor's, more than the "
                f"{state.clock_skew} s members allow: it refuses the admission, and would "
                "refuse every member's records",
                hint="set the clock right (`timedatectl set-ntp true`), then join again "
                "(with a new invite if this one is used up)",
            )
        reason = "not admitted" if me is None else me.reason
        if reason == "invite-used-up":
            raise VerifyError(
                "invite-used-up",
                "the invite has been used up (another admission under it came first)",
                hint="ask for a new invite",
            )
        raise JoinError(f"the admission does not stand here: {reason}")
    store = Store(paths.db, seal_key=seal_key_of(node_key.seed))
    try:
        store.set_meta("network", anchor.network.raw)
        store.set_meta("name", name.encode())
        store.set_meta("bootstrap", "\n".join(addrs).encode())  # dialled while isolated
        store.apply(changes)
    finally:
        store.close()
    progress(f"admitted as {name} ({me.node_id}), overlay {me.overlay}")
    said = clock_warning(ahead, state.clock_skew)
    if said:
        progress(said)
    return NodeDir.open(paths.root)


#: Seconds our clock may differ from a sponsor's before a join says so (a round trip and
#: a second's rounding are well under it; NTP keeps clocks within milliseconds).
CLOCK_WARN = 60


def clock_warning(ahead: int, allowed: int) -> str | None:
    """What to tell a joiner whose clock is ``ahead`` seconds ahead of its sponsor's
    (behind: negative), when members refuse records dated more than ``allowed`` seconds
    ahead of their own; None when the clocks agree well enough."""
    if abs(ahead) <= CLOCK_WARN:
        return None
    way = "ahead of" if ahead > 0 else "behind"
    if ahead > allowed:
        then = (
            f"members refuse records dated more than {allowed} s ahead of their clocks, so "
            "they will refuse this node's (it will not be heard) until its clock is set right"
        )
    else:
        then = f"members refuse records dated more than {allowed} s ahead of their clocks"
    return (
        f"warning: this machine's clock is {abs(ahead)} s {way} the sponsor's; {then}: "
        "check both clocks (`timedatectl`, NTP)"
    )
