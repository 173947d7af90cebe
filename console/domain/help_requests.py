"""Asking for help (SPEC §10): an agent on a call asks supervisors for help with a
short text (``help.requested``, supervisors only); the request clears once
(``help.updated``) when a supervisor takes it (starts or switches monitoring of the
call, or dismisses it), when the agent cancels it, or when the call ends. The agent
is told it was taken, never how: the update carries no monitoring mode.

Requests live on their conference's record, so each change is part of the unit that
makes it (the monitoring that takes it, the settling that ends the call); asking and
withdrawing are in console/domain/actions.py."""

from __future__ import annotations

from console.domain.derive import ConferenceView
from console.domain.events import Event
from console.domain.records import ConferenceRecord, HelpRequest
from console.domain.unit import Unit

REQUESTED, UPDATED = "help.requested", "help.updated"
OPEN, TAKEN, CANCELED, ENDED = "open", "taken", "canceled", "ended"
TEXT_MAX = 200


def announce(unit: Unit, record: ConferenceRecord, request: HelpRequest, kind: str) -> None:
    # An empty audience is supervisors only; the agent hears how their request ended.
    audience = frozenset() if kind == REQUESTED else frozenset({request.agent})
    unit.events.append(Event(kind, request.public(record.name), unit.now, audience, record.name))


def close(unit: Unit, record: ConferenceRecord, request: HelpRequest, status: str) -> None:
    request.status = status
    announce(unit, record, request, UPDATED)


def take_all(unit: Unit, record: ConferenceRecord) -> None:
    """A supervisor started or switched monitoring of the call: its open requests are
    taken."""
    for request in record.help.values():
        if request.status == OPEN:
            close(unit, record, request, TAKEN)


def end_with_call(unit: Unit, record: ConferenceRecord, view: ConferenceView) -> None:
    """The call ended: its open requests end with it."""
    if view.status != "ended" and not view.customer_gone:
        return
    for request in record.help.values():
        if request.status == OPEN:
            close(unit, record, request, ENDED)
