"""The state dir: where a node keeps its keys, its store and its control socket.

Layout (default /var/lib/meshd, or ``--state-dir``, or MESHD_STATE_DIR):

    node.key     Ed25519 node identity (also the libp2p identity)       0600
    wg.key       WireGuard private key                                  0600
    root.key     the trust root, when it is kept here (``meshd init``)  0600
    admin.key    a delegated admin key, when this node holds one        0600
    admin.cert   that admin key's certificate
    meshd.db     the SQLite store (WAL)
    meshd.sock   the daemon's control socket                            0660

The directory itself is created 0700.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from meshd.errors import DecodeError, KeyFileError, UnsafePermissions, UsageError, VerifyError
from meshd.membership import Membership
from meshd.node.layout import STORE_FILES, Paths
from meshd.node.permissions import UNSAFE_DIR_BITS, check_owner, check_private_dir
from meshd.node.rekey import finish_node_rotation
from meshd.node.store import Store, seal_key_of
from meshd.records import Certificate, Role, decode_untrusted, make_certificate, make_network
from meshd.trust.chain import Anchor, Verifier
from meshd.trust.invites import Issuer
from meshd.trust.keyfiles import read_secret, write_secret
from meshd.trust.keys import SigningKey, WireGuardKey, clamp_x25519

FOUNDER_TTL = 10 * 365 * 24 * 3600


def now() -> int:
    return int(time.time())


def make_dir(path: Path) -> None:
    """Create ``path`` 0700; or take a directory that exists, if it is ours and either private
    already or empty (made for meshd, as systemd's ``StateDirectory=`` makes one). One that
    holds anything while others may enter it (``/tmp``, a home directory) is refused, not
    made private: its mode is not ours to change; one of another user's likewise."""
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # whatever the umask
        return
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path} exists and is not a directory", hint="give a directory's path")
    check_owner(path, info, "the directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & UNSAFE_DIR_BITS and mode != 0o750:
        if any(path.iterdir()):
            raise UnsafePermissions(
                f"{path} holds files already and is open to others (mode {mode:04o}): meshd "
                "does not take over a directory in use",
                hint="give a new directory (meshd creates it), or an empty one",
            )
        os.chmod(path, 0o700)


@contextmanager
def undone_on_failure(root: Path, names: Sequence[str]) -> Iterator[None]:
    """Leave ``root`` as it was if the body fails (a full disk, Ctrl-C): the files of
    ``names`` that did not exist are removed, with any temporary key file left, and ``root``
    itself if it did not exist (and holds nothing else)."""
    existed = root.exists()
    before = {name for name in names if (root / name).exists()}
    try:
        yield
    except BaseException:
        for name in names:
            if name not in before:
                with suppress(OSError):
                    (root / name).unlink()
        with suppress(OSError):
            for tmp in root.glob(f".*.{os.getpid()}.tmp"):
                tmp.unlink()
        if not existed:
            with suppress(OSError):
                root.rmdir()  # only if empty: nothing of anyone else's goes
        raise


def create_identity(paths: Paths) -> tuple[SigningKey, WireGuardKey]:
    """Generate this node's keys; refuses to overwrite existing ones."""
    if paths.node_key.exists():
        raise UsageError(
            f"{paths.root} already holds a node identity",
            hint="use another --state-dir, or remove that one if you mean to start over",
        )
    make_dir(paths.root)
    node, wg = SigningKey.generate(), WireGuardKey.generate()
    write_secret(paths.node_key, node.seed)
    write_secret(paths.wg_key, wg.secret)
    return node, wg


@dataclass(slots=True)
class NodeDir:
    """An opened, initialised state dir."""

    paths: Paths
    store: Store
    anchor: Anchor
    node_key: SigningKey
    wg_key: WireGuardKey

    @classmethod
    def open(cls, state_dir: Path) -> NodeDir:
        paths = Paths(state_dir)
        if (state_dir / "left").exists():
            raise UsageError(
                f"the node of {state_dir} left its network (`meshd leave`): its keys are gone",
                hint="join again with a new invite and another --state-dir, or remove this one",
            )
        if not paths.db.exists():
            raise UsageError(
                f"{state_dir} holds no meshd node",
                hint="create a network with `meshd init --network NAME` or join one with "
                "`meshd join --invite TOKEN` (or pass --state-dir)",
            )
        check_private_dir(paths.root)
        node_key = SigningKey(read_secret(paths.node_key))
        wg_secret = read_secret(paths.wg_key)
        if clamp_x25519(wg_secret) != wg_secret:
            raise KeyFileError(f"the WireGuard key in {paths.wg_key} is not clamped")
        store = Store(paths.db, seal_key=seal_key_of(node_key.seed))
        if finish_node_rotation(paths.root, store):  # `meshd rotate node` cut short
            node_key = SigningKey(read_secret(paths.node_key))
            store.seal_key = seal_key_of(node_key.seed)
        network = store.network()
        if network is None:
            store.close()
            raise UsageError(
                f"{state_dir} has a store but no network",
                hint="run `meshd init` or `meshd join` for this state dir",
            )
        try:
            anchor = Anchor.from_network(network)
        except VerifyError:
            store.close()
            raise UsageError(f"the network record in {paths.db} does not verify") from None
        return cls(paths, store, anchor, node_key, WireGuardKey(wg_secret))

    @property
    def first_key(self) -> bytes:
        """The node key this member enrolled with, which its overlay address derives from
        (``meshd rotate node`` keeps the address; docs/wire-format.md §6.12)."""
        return self.store.get_meta("first_key") or self.node_key.public

    def close(self) -> None:
        self.store.close()

    @property
    def name(self) -> str:
        return (self.store.get_meta("name") or b"").decode()

    def membership(self, at: int | None = None, **options: int) -> Membership:
        state = Membership(self.anchor, **options)
        self.store.load_into(state, now() if at is None else at)
        return state

    def _rolled_over_to(self, key: bytes) -> bool:
        """Whether a rollover in the store hands the network to ``key`` (wire-format §6.11)."""
        return self.membership().roots.on_chain(key)

    def issuer(self, root_key: Path | None = None) -> Issuer:
        """The key this node signs invites and revocations with: the root, else an admin key."""
        if root_key is not None or self.paths.root_key.exists():
            key = SigningKey(read_secret(root_key or self.paths.root_key))
            if key.public != self.anchor.root_key and not self._rolled_over_to(key.public):
                raise KeyFileError(
                    f"{root_key or self.paths.root_key} is not this network's root key"
                )
            return Issuer(key)
        if self.paths.admin_key.exists():
            key = SigningKey(read_secret(self.paths.admin_key))
            try:
                cert = decode_untrusted(self.paths.admin_cert.read_bytes(), Certificate)
                verifier = Verifier(self.anchor)
                if cert.issuer != self.anchor.root_key:  # a root the network rolled over to
                    verifier = self.membership().verifier
                verifier.certificate(cert)
            except (OSError, DecodeError, VerifyError) as exc:
                raise KeyFileError(
                    f"the admin certificate in {self.paths.admin_cert} is unusable: {exc}"
                ) from None
            if cert.subject != key.public or cert.role is not Role.ADMIN:
                raise KeyFileError(f"{self.paths.admin_cert} does not certify admin.key")
            return Issuer(key, cert)
        raise UsageError(
            "this node holds neither the root key nor an admin key",
            hint="pass --root-key PATH, or run this on a node that holds one",
        )


def init_network(
    state_dir: Path, *, network_name: str, node_name: str, root_key_path: Path | None, at: int
) -> NodeDir:
    """Create a network: root key, network record, this node's keys and founder certificate."""
    paths = Paths(state_dir)
    if paths.db.exists():
        raise UsageError(
            f"{state_dir} already holds a meshd node",
            hint="use another --state-dir, or remove that one if you mean to start over",
        )
    # A full disk or Ctrl-C part way leaves nothing behind: a state dir with keys and no
    # network was one that neither `init` nor `join` would take again.
    made = ("node.key", "wg.key", *STORE_FILES) + (("root.key",) if root_key_path is None else ())
    with undone_on_failure(state_dir, made):
        root_path = root_key_path or paths.root_key
        if root_path.exists():
            root = SigningKey(read_secret(root_path))
        else:
            root = SigningKey.generate()
            if root_key_path is None:
                make_dir(paths.root)
            write_secret(root_path, root.seed)
        node, wg = create_identity(paths)
        network = make_network(root, network_name, at)
        anchor = Anchor.from_network(network)
        founder = make_certificate(
            root,
            network_id=anchor.network_id,
            subject=node.public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=at,
            not_after=at + FOUNDER_TTL,
            name=node_name,
            wg_key=wg.public,
        )
        store = Store(paths.db, seal_key=seal_key_of(node.seed))
        try:
            store.set_meta("network", network.raw)
            store.set_meta("name", node_name.encode())
            store.apply([Membership(anchor).ingest(founder, at)])
        except BaseException:
            store.close()
            raise
        return NodeDir(paths, store, anchor, node, wg)
