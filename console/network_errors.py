"""Why a connection could not be made, in plain words (connection refused, name not
resolved, timed out, TLS failure): what `warmline check` prints and what a failed
Twilio request's GatewayError says, for Redis, PostgreSQL and Twilio alike."""

from __future__ import annotations

import socket
import ssl


def plain_reason(error: OSError) -> str:
    """The words for a socket, name-lookup or TLS error; its own message otherwise."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS failure: {error.verify_message or 'certificate not trusted'}"
    if isinstance(error, ssl.SSLError):
        return f"TLS failure: {(error.reason or 'handshake failed').lower().replace('_', ' ')}"
    if isinstance(error, socket.gaierror):
        return "name not resolved"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error) or type(error).__name__
