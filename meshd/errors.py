"""The one exception tree of meshd.

Every error meshd raises on purpose derives from :class:`MeshdError`. Untrusted bytes are
turned into :class:`DecodeError` (they do not parse) or :class:`VerifyError` (they parse but
are not to be trusted) exactly once, at the boundary where they enter, and are counted there;
they never crash a task. A user-facing error carries a ``hint``: what to do about it, and an
``exit_status``: what the command line exits with (the table is in the README, "Exit status").
"""

from __future__ import annotations


class MeshdError(Exception):
    """Root of every error meshd raises deliberately."""

    hint: str = ""
    exit_status: int = 1
    """1: what was asked cannot be done as asked (the default)."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def one_line(self) -> str:
        """The message a user sees: what happened, then what to do."""
        text = str(self).rstrip(".")
        return f"{text}; {self.hint}" if self.hint else text


class DecodeError(MeshdError):
    """Untrusted bytes that do not parse: truncated, oversized, non-canonical, unknown version."""


class VerifyError(MeshdError):
    """Well-formed input that is not to be trusted.

    ``reason`` is a short stable code (``bad-signature``, ``expired``, ``revoked``, ...) that
    tests, counters and the control protocol use; the message is for people.
    """

    def __init__(self, reason: str, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class UsageError(MeshdError):
    """The user asked for something that cannot be done as asked."""


class CommandLineError(UsageError):
    """The command line itself is wrong: a missing, conflicting or malformed argument (exit 2,
    like the argument errors the command-line parser reports)."""

    exit_status = 2


class AlreadyRunning(UsageError):
    """Another daemon holds this state dir, interface or route (exit 4)."""

    exit_status = 4


class NotPermitted(UsageError):
    """No permission, a missing capability, or permissions too open to be safe (exit 5)."""

    exit_status = 5


class AddressUnavailable(UsageError):
    """An address or port does not bind: in use, or not an address of this host (exit 6)."""

    exit_status = 6


class NodeRevoked(MeshdError):
    """This node's own membership is revoked: the daemon stops (exit 10)."""

    exit_status = 10

    @classmethod
    def because(cls, reason: str) -> NodeRevoked:
        """The error a revoked node's daemon stops with; ``reason`` is the revocation's."""
        why = f" ({reason})" if reason else ""
        return cls(
            f"this node is revoked{why}; its daemon stopped",
            hint="ask an admin of the network for a new invite and join again with another "
            "--state-dir",
        )


class KeyHandedOver(MeshdError):
    """This node's key was handed over to a new one (``meshd rotate node``): the daemon stops
    to start again under it (exit 75, EX_TEMPFAIL, which systemd's Restart=on-failure
    restarts)."""

    exit_status = 75

    @classmethod
    def now(cls) -> KeyHandedOver:
        return cls(
            "this node's key was handed over to a new key (meshd rotate node); "
            "its daemon stopped to start again under it",
            hint="start it again with `meshd up` (under systemd it restarts by itself)",
        )


class KeyFileError(UsageError):
    """A key file is missing, malformed or readable by others."""


class UnsafePermissions(KeyFileError, NotPermitted):
    """A state dir or key file that others can read or change: refused, as ssh does (exit 5)."""

    exit_status = 5


class StoreError(MeshdError):
    """The on-disk store cannot be opened, read or written."""


class StoreNotWritable(StoreError, NotPermitted):
    """The store's file system is full or read-only, or not ours to write: exit status 5,
    as for a state dir that cannot be written."""

    exit_status = 5


class BackendError(MeshdError):
    """A WireGuard or routing backend failed or answered something we cannot use."""


class ControlError(MeshdError):
    """The control socket protocol failed."""


class ControlDecodeError(ControlError, DecodeError):
    """A control line that does not parse as this meshd's protocol (another version, a bad
    command name): a DecodeError like all untrusted bytes, shown with its hint like any
    ControlError."""


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket of this state dir (exit 3)."""

    exit_status = 3
