"""The one exception tree of meshd.

Every error meshd raises on purpose derives from :class:`MeshdError`. Untrusted bytes are
turned into :class:`DecodeError` (they do not parse) or :class:`VerifyError` (they parse but
are not to be trusted) exactly once, at the boundary where they enter, and are counted there;
they never crash a task. A user-facing error carries a ``hint``: what to do about it.
"""

from __future__ import annotations


class MeshdError(Exception):
    """Root of every error meshd raises deliberately."""

    hint: str = ""

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


class KeyFileError(UsageError):
    """A key file is missing, malformed or readable by others."""


class StoreError(MeshdError):
    """The on-disk store cannot be opened, read or written."""


class BackendError(MeshdError):
    """A WireGuard or routing backend failed or answered something we cannot use."""


class ControlError(MeshdError):
    """The control socket protocol failed."""


class ControlDecodeError(ControlError, DecodeError):
    """A control line that does not parse as this meshd's protocol (another version, a bad
    command name): a DecodeError like all untrusted bytes, shown with its hint like any
    ControlError."""


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket of this state dir."""
