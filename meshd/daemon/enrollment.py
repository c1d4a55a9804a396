"""The enrollment service: ``/meshd/enroll/1.0.0`` countersigns invites for peers that
present them (:mod:`meshd.gossip.enroll`), within the grace and the attempts
:class:`~meshd.gossip.enroll.GracePolicy` (pure) gives a peer that is not a member."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from meshd.daemon.flooding import Flooder
from meshd.daemon.state import NodeState
from meshd.daemon.streams import read_enrollment
from meshd.daemon.transport import Transport, key_of
from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll
from meshd.gossip.bug_log import QuietLog
from meshd.gossip.streams import FramedStream
from meshd.trust.keys import fingerprint

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


class Enrollment:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        grace: enroll.GracePolicy,
        flooder: Flooder,
        refused: Callable[[str], None],
    ) -> None:
        self.host = host
        self.state = state
        self.grace = grace
        self.flooder = flooder
        self.refused = refused  # a revoked peer that tried: the connections service drops it
        self._quiet = QuietLog(log, clock=time.monotonic)  # refusals: counted, said seldom

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(enroll.PROTOCOL_ID, self.serve)
        task_status.started()

    async def serve(self, stream: FramedStream) -> None:
        peer = stream.remote_peer_id
        key = key_of(peer)
        if (
            key is not None
            and not self.state.is_member(key)
            and not self.grace.enrolling(peer, time.monotonic())
        ):
            self._quiet.log(logging.INFO, "refused enrollment from %s: attempts spent", peer)
            await stream.reset()
            return
        try:
            enrollment = await read_enrollment(stream)
            if key is None:
                raise VerifyError("wrong-peer", "the peer id does not name an Ed25519 key")
            admission = self.state.sponsor(enrollment, key)
        except (DecodeError, VerifyError) as exc:
            error = exc if isinstance(exc, VerifyError) else VerifyError("malformed", str(exc))
            self._quiet.log(logging.INFO, "refused enrollment from %s: %s", peer, error.reason)
            await stream.send_frame(enroll.encode_refusal(error))
            if error.reason == "revoked":
                self.refused(peer)
            return
        log.info(
            "admitted %s (%s)",
            admission.enrollment.name,
            fingerprint(admission.enrollment.node_key)[:10],
        )
        await stream.send_frame(enroll.encode_reply(admission))
        await self.flooder.flood(admission.raw)
