"""Errors of the WireGuard backends, all below :class:`meshd.errors.BackendError`.

:class:`UapiDecodeError` is also a :class:`meshd.errors.DecodeError`: a device's reply is
untrusted bytes, and every ``*_untrusted`` parser raises only DecodeError.
"""

from __future__ import annotations

import errno as errno_codes
import os

from meshd.errors import BackendError, DecodeError


class UapiError(BackendError):
    """Talking to a device over its UAPI socket failed."""


class UapiDecodeError(UapiError, DecodeError):
    """The device answered bytes that are not a UAPI reply: truncated, garbage, oversized."""


class UapiConnectionError(UapiError):
    """No reply: the socket is missing, refused, timed out or closed without an answer."""


class UapiErrnoError(UapiError):
    """The device answered with a non-zero ``errno``.

    ``errno`` is positive whatever sign the implementation used (wireguard-go answers -22,
    boringtun 22). A failed ``set`` is not rolled back: re-read the device before planning.
    """

    def __init__(self, errno: int, request: str) -> None:
        self.errno = abs(errno)
        name = errno_codes.errorcode.get(self.errno, "unknown")
        try:
            text = os.strerror(self.errno)
        except ValueError:
            text = "unknown error"
        super().__init__(
            f"WireGuard device rejected {request}: errno {self.errno} ({name}: {text})",
            hint="the device may be partly changed; re-read it before trying again",
        )


class BackendUnavailable(BackendError):
    """The requested WireGuard backend cannot run on this machine (exit 7)."""

    exit_status = 7
