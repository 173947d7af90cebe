"""Errors the domain raises on purpose; console.web.errors gives them their one shape on the API."""

from __future__ import annotations


class DomainError(Exception):
    """A request the current state does not allow; ``status`` is its HTTP status."""

    status = 409

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class BadRequest(DomainError):
    status = 400


class Contended(Exception):
    """The unit kept losing optimistic races; the caller answers 503 so Twilio retries."""
