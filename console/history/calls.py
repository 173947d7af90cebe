"""A call's history rows from its conference's events (docs/history.md, how history is
written): a pure function of the set of events, so delivering them twice, in any
batch split, or storing them out of order always gives the same rows.

Every time is an event's ``ts`` (the app's clock when it received what caused the
event), never Twilio's ``Timestamp`` (SPEC §8, definitions). A call is answered when
an agent joined it; abandoned when the caller left before that, whether Twilio
reported the conference's end or only the caller's leaving (``participant.left`` of
the customer, ``call.dequeued`` with reason ``hung-up``). A caller sent to leave a
message at arrival (``call.diverted``: closed hours, nobody signed in) was never
offered; a call that left a message (``voicemail.created``) ends as ``voicemail``,
whatever sent the caller there. A call without an end has no outcome.

A caller who asked to be called back (``call.dequeued`` with reason
``callback-requested``) leaves the line then: their call ends as
``callback-requested``. The callback (SPEC §9) is a call of its own, named by its id,
whatever conferences it was served in (``<id>-2``… are filed under ``<id>``):
``kind = "callback"``, ``origin`` the call that asked (or left the voicemail), ``from``
its number, arrived when requested, answered when the number was connected (its
customer joined with the agent there), ``completed`` once that call ended. A callback
that ended without ever being connected (its dial attempts used up, or closed before
the number answered) has none of SPEC §8's end reasons: it is not an abandon (nobody
hung up on a wait), so its outcome is ``failed``. Callbacks are never ``offered``: the
reports count inbound calls only (their requests are counted as ``callbacks``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.domain.timeline import filed_under

LINE_EVENTS = ("call.queued", "call.dequeued")  # about a caller, named by their CallSid
NOT_STORED = frozenset({"queue.updated"})  # the whole line: call.* events already tell it
AGENTS_VIEW = "agents"  # data["view"] of the copies of supervisor legs made for agents
TERMINAL_TRANSFER = frozenset({"completed", "failed", "canceled"})
# Recordings kept with the call: one recording or still recording (absent, failed:
# nothing to play; deleted: gone for good, whatever is reported of it later).
KEPT_RECORDING = frozenset({"in-progress", "paused", "completed"})


CALLBACK_UPDATED = "callback.updated"
CLOSED_CALLBACK = frozenset({"done", "failed"})
FAILED_CALLBACK = "failed"  # the outcome of a callback never connected (module docstring)
CALLBACK_ID = re.compile(r"CB[0-9a-f]{32}")  # console/domain/callbacks.py new_id


def conference_of(kind: str, data: Mapping[str, Any], conference: str | None) -> str | None:
    """The call an event belongs to, as timelines file them
    (console.domain.timeline.filed_under): a caller's line events by their CallSid, a
    callback's (line events and every session's conference) by the callback's id."""
    return filed_under(kind, data, conference)


def id_key(event_id: str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as the pair it is ordered by."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class CallRows:
    """A call's row of ``calls`` and its rows of ``call_legs`` and ``call_transfers``
    (console/history/migrations/0001_initial.sql), as column -> value dicts."""

    call: dict[str, Any]
    legs: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)


class _Holds:
    """On-hold intervals of one call leg, from its flags in participant events."""

    def __init__(self) -> None:
        self.since: int | None = None
        self.total = 0

    def flag(self, hold: bool, ts: int) -> None:
        if hold and self.since is None:
            self.since = ts
        elif not hold and self.since is not None:
            self.total += max(0, ts - self.since)
            self.since = None

    def until(self, ts: int) -> int:
        """The time on hold, counting an open interval up to ``ts``."""
        return self.total + (max(0, ts - self.since) if self.since is not None else 0)


@dataclass
class _Leg:
    call_sid: str
    agent: str
    role: str
    joined_at: int
    left_at: int | None = None
    holds: _Holds = field(default_factory=_Holds)


def derive_call(name: str, events: Iterable[Mapping[str, Any]]) -> CallRows | None:
    """The rows of call ``name`` from its events (dicts with ``id``, ``type``, ``ts``,
    ``data``; any order, duplicates allowed); None when there are none."""
    unique = {e["id"]: e for e in events}
    ordered = [unique[i] for i in sorted(unique, key=id_key)]
    if not ordered:
        return None
    return _Fold(name, is_callback(name, ordered)).run(ordered)


def is_callback(name: str, events: Iterable[Mapping[str, Any]]) -> bool:
    """Is call ``name`` a callback: named by a callback's id, or told by its events."""
    return CALLBACK_ID.fullmatch(name) is not None or any(
        e["type"] == CALLBACK_UPDATED
        or (e["type"] in LINE_EVENTS and e["data"].get("callback") == name)
        for e in events
    )


class _Fold:
    """One pass over a call's events in log order."""

    def __init__(self, name: str, callback: bool = False) -> None:
        self.name = name
        self.callback: dict[str, Any] | None = {} if callback else None  # its last state
        self.connected_at: int | None = None  # a callback's number on the line with an agent
        self.connected_by: str | None = None
        self.customers: dict[str, int] = {}  # customer call_sid -> joined (present only)
        self.left_for: str | None = None  # why the caller left the line (not hung up)
        self.from_number: str | None = None
        self.queued_at: int | None = None
        self.answered: _Leg | None = None
        self.ended_at: int | None = None
        self.customer = _Holds()
        self.legs: dict[str, _Leg] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.recording: dict[str, Any] | None = None
        self.deleted: set[str] = set()
        self.diverted: str | None = None  # why the caller never reached the line
        self.voicemail: dict[str, Any] | None = None
        self.disposition: str | None = None
        self.notes: str | None = None
        self.wrap_up_ms = 0  # every agent's wrap-up after the call
        self.handlers: set[str] = set()  # who claimed or closed its voicemail

    def run(self, events: list[Mapping[str, Any]]) -> CallRows:
        for event in events:
            self._apply(event["type"], int(event["ts"]), event["data"])
        first = min(int(e["ts"]) for e in events)
        last = max(int(e["ts"]) for e in events)
        arrived = self.queued_at if self.queued_at is not None else first
        if self.callback is not None and self.callback.get("requested_at") is not None:
            arrived = int(self.callback["requested_at"])  # its place counts from the ask
        return self._rows(arrived, last)

    def _apply(self, kind: str, ts: int, data: Mapping[str, Any]) -> None:
        if kind == "call.queued":
            self.queued_at = ts if self.queued_at is None else self.queued_at
            self._number(data.get("from"))
        elif kind == "call.dequeued":
            reason = data.get("reason")
            if reason == "hung-up" and self._customer_counts():
                self._end(ts)
            elif reason in ("callback-requested", "voicemail") and self.callback is None:
                self.left_for = reason
                if reason == "callback-requested":  # they hang up after the goodbye
                    self._end(ts)
        elif kind in ("conference.started", "conference.ended"):
            self._number(data.get("from"))
            if kind == "conference.ended":
                # A callback's session that ended before its number answered is not
                # its end: it goes on in the next one (or ends when it closes).
                if self._customer_counts():
                    self._end(ts)
                for leg in self.legs.values():
                    self._leave(leg, ts)
                self.customers.clear()
        elif kind == CALLBACK_UPDATED:
            self._callback(ts, data)
        elif kind.startswith("participant.") and data.get("view") != AGENTS_VIEW:
            self._participant(kind, ts, data)
        elif kind == "transfer.updated":
            self._transfer(ts, data)
        elif kind == "recording.updated":
            self._recording(data)
        elif kind == "call.diverted":
            self.queued_at = ts if self.queued_at is None else self.queued_at
            self.diverted = data.get("reason") or self.diverted
            self._number(data.get("from"))
            self._end(ts)
        elif kind in ("voicemail.created", "voicemail.updated"):
            self._voicemail(ts, data)
        elif kind == "call.wrapped-up":  # part of the handle time (SPEC §8)
            self.wrap_up_ms += int(data.get("wrap_up_ms") or 0)
        elif kind == "call.disposition":  # the agent's wrap-up: the latest given wins
            self.disposition = data.get("disposition") or self.disposition
            self.notes = data.get("notes") or None

    def _number(self, number: str | None) -> None:
        self.from_number = self.from_number or number

    def _customer_counts(self) -> bool:
        """Does the customer's leaving end the call: always for a caller, for a
        callback once its number was connected (a machine that answered does not)."""
        return self.callback is None or self.connected_at is not None

    def _callback(self, ts: int, data: Mapping[str, Any]) -> None:
        """A callback's state: its number, request time and origin; connected (by the
        agent there when the number joined); over once closed (done or failed)."""
        assert self.callback is not None
        self.callback = {**self.callback, **{k: v for k, v in data.items() if v is not None}}
        if data.get("number"):
            self.from_number = data["number"]
        if data.get("agent"):
            self.handlers.add(data["agent"])
        if data.get("status") == "connected" and self.connected_at is None:
            # The number's participant joined in this unit (the join is logged first).
            self.connected_at = max(self.customers.values(), default=ts)
            present = [
                leg.agent
                for leg in self.legs.values()
                if leg.left_at is None and leg.role == "agent" and leg.agent
            ]
            # The callback's agent when there; else the agent who is (a transfer's).
            agent = data.get("agent")
            self.connected_by = agent if agent in present or not present else present[0]
        if data.get("status") in CLOSED_CALLBACK:
            self._end(ts)
        if data.get("disposition"):
            self.disposition = data["disposition"]

    def _end(self, ts: int) -> None:
        """The caller is gone: the first sign of it is the call's end."""
        if self.ended_at is None:
            self.ended_at = ts
            self.customer.flag(False, ts)

    def _leave(self, leg: _Leg, ts: int) -> None:
        if leg.left_at is None:
            leg.left_at = ts
            leg.holds.flag(False, ts)

    def _participant(self, kind: str, ts: int, data: Mapping[str, Any]) -> None:
        call_sid, role = data.get("call_sid") or "", data.get("role")
        if role == "customer":
            self._number(data.get("from"))
            if kind == "participant.left":
                self.customers.pop(call_sid, None)
                if self._customer_counts():
                    self._end(ts)
                return
            if kind == "participant.joined":
                self.customers.setdefault(call_sid, ts)
            if self.ended_at is None and self._customer_counts():
                self.customer.flag(bool(data.get("hold")), ts)
            return
        leg = self.legs.get(call_sid)
        if leg is None:
            if kind != "participant.joined":
                return
            leg = _Leg(call_sid, data.get("agent") or "", role or "agent", ts)
            self.legs[call_sid] = leg
            # The first agent to join answers; one joining after the caller left does not
            # (a callback is answered when its number is connected).
            first = self.answered is None and self.ended_at is None and self.callback is None
            if first and leg.role == "agent" and leg.agent:
                self.answered = leg
        if kind == "participant.left":
            self._leave(leg, ts)
        elif leg.left_at is None:
            leg.holds.flag(bool(data.get("hold")), ts)

    def _transfer(self, ts: int, data: Mapping[str, Any]) -> None:
        tid = data.get("id")
        if not tid:
            return
        row = self.transfers.setdefault(tid, {"id": tid, "requested_at": ts, "ended_at": None})
        if data.get("status") != row.get("status"):
            row["ended_at"] = ts if data.get("status") in TERMINAL_TRANSFER else None
        row["status"] = data.get("status") or "requested"
        row["data"] = dict(data)

    def _recording(self, data: Mapping[str, Any]) -> None:
        """The call's recording as last reported; a deleted one never comes back."""
        sid, status = data.get("sid"), data.get("status")
        if not sid or sid in self.deleted:
            return
        if status == "deleted":
            self.deleted.add(sid)
        previous = self.recording if self.recording and self.recording["sid"] == sid else {}
        duration = data.get("duration")
        if duration is None:
            duration = previous.get("duration")
        if status in KEPT_RECORDING:
            self.recording = {"sid": sid, "duration": duration, "status": status}
        elif previous:
            self.recording = None

    def _voicemail(self, ts: int, data: Mapping[str, Any]) -> None:
        self._number(data.get("from"))
        recording = data.get("recording") or {}
        sid = recording.get("sid")
        if sid and sid not in self.deleted and self.voicemail is None:
            self.voicemail = {"sid": sid, "duration": data.get("duration")}
            self._end(ts)
        if data.get("claimed_by"):
            self.handlers.add(data["claimed_by"])
        if data.get("status") == "closed":
            self.disposition = data.get("disposition") or self.disposition

    def _answer(self) -> tuple[int, str] | None:
        """When the call was answered and by whom: a caller's by the first agent who
        joined, a callback's when its number was connected."""
        if self.callback is not None:
            if self.connected_at is None:
                return None
            return self.connected_at, self.connected_by or ""
        if self.answered is None:
            return None
        return self.answered.joined_at, self.answered.agent

    def _outcome(self, answered: bool) -> str | None:
        if self.ended_at is None:
            return None
        if self.callback is not None:
            return "completed" if answered else FAILED_CALLBACK
        if self.voicemail is not None and not answered:
            return "voicemail"
        if self.diverted is not None:
            return self.diverted
        if self.left_for == "callback-requested":
            return "callback-requested"
        return "completed" if answered else "abandoned"

    def _rows(self, arrived_at: int, last: int) -> CallRows:
        end = self.ended_at if self.ended_at is not None else last
        answer = self._answer()
        hold_ms = self.customer.until(end) if answer else 0
        wait_ms: int | None = None
        talk_ms = 0
        if answer is not None:
            wait_ms = max(0, answer[0] - arrived_at)
            talk_ms = max(0, end - answer[0] - hold_ms)
        elif self.ended_at is not None and self.diverted is None and self.callback is None:
            wait_ms = max(0, self.ended_at - arrived_at)
        outcome = self._outcome(answer is not None)
        callback = self.callback or {}
        legs = list(self.legs.values())  # in the order they joined (the log's)
        agents = {leg.agent for leg in legs if leg.role == "agent" and leg.agent} | self.handlers
        for transfer in self.transfers.values():
            agents |= {transfer["data"].get("from_agent"), transfer["data"].get("to_agent")}
        call = {
            "id": self.name,
            "kind": "inbound" if self.callback is None else "callback",
            "origin": callback.get("origin"),
            "from_number": self.from_number,
            "arrived_at": arrived_at,
            "offered": self.diverted is None and self.callback is None,
            "answered_at": answer[0] if answer else None,
            "answered_by": (answer[1] or None) if answer else None,
            "ended_at": self.ended_at,
            "outcome": outcome,
            "wait_ms": wait_ms,
            "talk_ms": talk_ms,
            "hold_ms": hold_ms,
            "agents": sorted(a for a in agents if a),
            "recording": self.recording,
            "voicemail": self.voicemail
            if self.voicemail is not None and self.voicemail["sid"] not in self.deleted
            else None,
            "disposition": self.disposition,
            "notes": self.notes,
            "wrap_up_ms": self.wrap_up_ms,
            "updated_at": last,
        }
        return CallRows(
            call,
            [
                {
                    "call_id": self.name,
                    "position": position,
                    "call_sid": leg.call_sid,
                    "agent": leg.agent,
                    "role": leg.role,
                    "joined_at": leg.joined_at,
                    "left_at": leg.left_at,
                    "hold_ms": leg.holds.until(leg.left_at if leg.left_at is not None else end),
                }
                for position, leg in enumerate(legs)
            ],
            [
                {"call_id": self.name, **row}
                for _, row in sorted(self.transfers.items(), key=lambda item: item[0])
            ],
        )
