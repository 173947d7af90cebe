"""Rebuild the live picture from Twilio's REST API after Redis lost its data.

Twilio keeps the truth about calls in progress: which conferences are live and who
is in them. When Redis comes back empty (or the Voice URL could not record a call),
``reconcile`` lists the conferences Twilio has in progress (and ``init``: customers
still waiting alone), and for each one Redis knows nothing about writes a
conference record whose *facts* make ``console.domain.derive`` produce what Twilio shows.
It goes through a unit of work like any webhook, so dashboards get the usual
events and settling applies the usual rules afterwards.

Design decisions (see also the README, "Reconcile"):

* **Synthetic callbacks use negative SequenceNumbers** (from ``SYNTHETIC_SEQ``).
  Twilio's own numbers for a conference are positive and keep counting from where
  they were, so every real callback that arrives later folds *after* the
  reconstructed ones: a real ``participant-leave`` removes the participant, a real
  ``conference-end`` ends the conference. Callback keys include the sequence
  number, so a synthetic fact can never be mistaken for a real duplicate.
* **Who is who.** The customer is the participant whose CallSid is the
  conference's FriendlyName (or labelled ``customer``). Everybody else was dialed
  as ``client:<username>``: the Call resource's ``to`` names them. A user with role
  supervisor in ``keys.USERS`` is a supervisor; when the users are gone too (Redis
  lost everything), a participant who is muted or coaching is a supervisor (the
  app never mutes or coaches an agent), anyone else an agent. A barging supervisor
  of an unknown user therefore shows as an agent: the one guess we cannot avoid.
* **Agents get answered Dials** labelled as their participants are (the label
  *is* the app's dial id, so the call-status callbacks Twilio sends when their call
  ends find it) and are ``busy`` with the conference: when they leave, they are
  released exactly as after a normal call. Supervisors get supervisor Dials.
* **Only missing conferences are rebuilt.** A record that saw the call from its
  start is never touched (the callbacks that follow are the truth). A *partial*
  record, created by a later callback alone (no Voice URL, no customer joining:
  Redis had lost them), is completed with the participants it lacks. Nothing a
  record already knows (joined or left) is added again, which makes a second run
  change nothing.
* **Empty Redis** is the absence of the ``MARKER`` key: it is written when a
  reconcile finishes and never expires, so a Redis that lost its data has lost it
  too. The marker doubles as the lock: ``SET NX EX`` claims it while reconciling
  (one process at a time; it expires if that process dies) and a finished run
  makes it permanent. A fresh deployment is "empty" too: reconcile then finds
  nothing on Twilio and writes the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quart import Quart
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.config import Settings
from console.domain import keys
from console.domain.derive import CUSTOMER_LABEL, derive, dial_active, dials_under_way
from console.domain.effects import Effect, HangUp, UpdateParticipant
from console.domain.errors import Contended
from console.domain.events import now_ms
from console.domain.flow import callback_key
from console.domain.records import AgentStatus, Callback, ConferenceRecord, Dial, DialKind
from console.domain.settle import call_off
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.extension import ServingExtension, settings_of
from console.ids import NAME, USERNAME
from console.network_errors import redis_reason
from console.redis_ext import RedisExtension, watch_failovers
from console.tasks import cancel
from console.telephony.gateway import GatewayError, TwilioGateway
from console.telephony.runner import Runner, request

log = logging.getLogger(__name__)

SYNTHETIC_SEQ = -1_000_000
"""Sequence number of a reconstructed conference-start; joins follow it, all below 0."""

MARKER = keys.PREFIX + "reconciled"
# The end reason of a conference reconcile found completed at Twilio and live here.
ENDED_ON_TWILIO = "ended-while-redis-lost-it"
"""String: ``done:<ms>`` once this Redis has been reconciled with Twilio (no expiry),
``running:<token>`` (expiring) while a process is at it. Absent: Redis is empty."""

RUNNING_SECONDS = 120  # a claim outlives any sane run; a dead process's claim expires
RETRY_SECONDS = 30  # after a failed run (Twilio unreachable), try again this much later
CHECK_SECONDS = 5.0  # how often a serving process looks for an emptied Redis
START_BUDGET_SECONDS = 1.0  # the one Redis command start-up waits for, at most

# Finish a claim: KEYS[1] the marker, ARGV[1] our claim, ARGV[2] "done" value or "",
# ARGV[3] seconds until a retry. Only the claim's owner may finish it.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) else
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3])) end
return 1
"""


# -- what Twilio shows --------------------------------------------------------


@dataclass(frozen=True)
class SeenParticipant:
    """One active participant as Twilio lists it, with who it is."""

    call_sid: str
    label: str | None
    role: str  # customer | agent | supervisor
    username: str | None
    muted: bool
    hold: bool
    coaching: bool
    end_on_exit: bool
    joined_at: int


@dataclass(frozen=True)
class SeenConference:
    """A live conference as Twilio shows it."""

    name: str
    sid: str
    status: str  # init | in-progress
    created_at: int
    from_number: str | None
    participants: list[SeenParticipant]

    @property
    def started_at(self) -> int:
        """Twilio does not say when mixing began: the first agent's joining started it."""
        joins = [p.joined_at for p in self.participants if p.role != "customer"]
        return min(joins, default=self.created_at)


# -- the report -----------------------------------------------------------------


@dataclass
class Rebuilt:
    """One conference reconcile wrote facts for."""

    name: str
    status: str
    people: list[str]
    queued: bool = False
    merged: bool = False

    def line(self) -> str:
        what = "completed" if self.merged else "rebuilt"
        who = ", ".join(self.people) or "nobody"
        tail = "; customer back in the queue" if self.queued else ""
        return f"{what} {self.name} ({self.status}): {who}{tail}"


@dataclass
class ReconcileReport:
    """What a reconcile found and did; ``effects`` are the Twilio actions settling
    asked for (the app's runner carries them out; the CLI does it itself)."""

    listed: int = 0
    rebuilt: list[Rebuilt] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # live here, completed at Twilio
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"reconciled {self.listed} live conference(s) on Twilio: "
            f"{len(self.rebuilt)} rebuilt, {self.unchanged} already known"
        )
        if self.ended:
            text += f"; {len(self.ended)} ended on Twilio, ended here"
        if self.problems:
            text += f", {len(self.problems)} skipped (see above)"
        return text


# -- reconcile -------------------------------------------------------------------


async def reconcile(redis: Redis, gateway: TwilioGateway, settings: Settings) -> ReconcileReport:
    """Bring Redis in line with the conferences Twilio has live (module docstring).

    Raises ``GatewayError`` when Twilio cannot list conferences (nothing is written
    then); a conference whose details cannot be read is skipped and reported, so
    the next run tries it again."""
    report = ReconcileReport()
    listed = await gateway.live_conferences("in-progress")
    listed += await gateway.live_conferences("init")
    listed.sort(key=lambda c: (_ms(c.date_created) or 0, c.sid))
    report.listed = len(listed)
    for conference in listed:
        name = str(conference.friendly_name)
        if not await _needs_facts(redis, name):
            report.unchanged += 1
            continue
        try:
            seen = await _observe(redis, gateway, conference)
        except GatewayError as exc:
            report.problems.append(f"skipped {name}: {exc}")
            continue
        if seen is None:
            report.unchanged += 1
            continue
        rebuilt, effects = await run_unit(redis, settings, functools.partial(_rebuild, seen=seen))
        report.effects += effects
        if rebuilt is None:
            report.unchanged += 1
        else:
            report.rebuilt.append(rebuilt)
    await _end_stale(redis, gateway, settings, {str(c.friendly_name) for c in listed}, report)
    return report


async def _end_stale(
    redis: Redis,
    gateway: TwilioGateway,
    settings: Settings,
    listed: set[str],
    report: ReconcileReport,
) -> None:
    """End the conferences Redis holds live that Twilio no longer lists: their end was
    lost (a Redis failover drops what the old master had not replicated), and their
    agents would stay ``busy``, their caller in line. Each is fetched by its SID first
    (known once Twilio reported the conference): only one Twilio says is ``completed``
    is ended."""
    for name in sorted(set(await redis.smembers(keys.LIVE)) - listed):
        raw = await redis.get(keys.conference(name))
        if raw is None:
            continue
        view = derive(ConferenceRecord.from_json(raw))
        if view.status == "ended" or not view.sid:
            continue
        try:
            status = await gateway.conference_status(view.sid)
        except GatewayError as exc:
            report.problems.append(f"skipped {name}: {exc}")
            continue
        if status != "completed":
            continue
        ended, effects = await run_unit(redis, settings, functools.partial(_end, name=name))
        report.effects += effects
        if ended:
            report.ended.append(name)


async def _end(unit: Unit, *, name: str) -> bool:
    """End ``name`` as Twilio's lost ``conference-end`` would have: settling releases its
    agents and closes its transfers as after any end."""
    record = await unit.conference(name)
    if record is None:
        return False
    view = derive(record)
    if view.status == "ended" or not view.sid:
        return False
    record.end_here(unit.now, view.sid, ENDED_ON_TWILIO)
    return True


async def _needs_facts(redis: Redis, name: str) -> bool:
    """A conference Redis knows nothing of, or only from callbacks (see the module
    docstring). A known live one missing from ``keys.LIVE`` is put back there."""
    raw = await redis.get(keys.conference(name))
    if raw is None:
        return True
    record = ConferenceRecord.from_json(raw)
    if _partial(record):
        return True
    if derive(record).status != "ended" and not await redis.sismember(keys.LIVE, name):
        await redis.sadd(keys.LIVE, name)
    return False


def _partial(record: ConferenceRecord) -> bool:
    """Recorded from callbacks alone, without the customer's joining: the Voice URL
    and the conference's first callbacks were lost (Redis emptied or down)."""
    return record.from_number is None and not any(
        c.event == "participant-join" and (c.call_sid == record.name or c.label == CUSTOMER_LABEL)
        for c in record.callbacks.values()
    )


async def _observe(redis: Redis, gateway: TwilioGateway, conference: Any) -> SeenConference | None:
    """Who is in the conference, from its participants and their calls."""
    name, sid = str(conference.friendly_name), str(conference.sid)
    people: list[SeenParticipant] = []
    from_number: str | None = None
    for participant in await gateway.participants(sid):
        if participant.status not in (None, "connected"):
            continue  # still being added: it joins (and calls back) later, or never
        call_sid = str(participant.call_sid)
        call = await gateway.fetch_call(call_sid)
        customer = call_sid == name or participant.label == CUSTOMER_LABEL
        username = None if customer else _client_identity(call.to)
        if customer:
            role, from_number = "customer", call._from
        else:
            role = await _role(redis, username, participant)
        people.append(
            SeenParticipant(
                call_sid=call_sid,
                label=participant.label,
                role=role,
                username=username,
                muted=bool(participant.muted),
                hold=bool(participant.hold),
                coaching=bool(participant.coaching),
                end_on_exit=bool(participant.end_conference_on_exit),
                joined_at=_ms(participant.date_created) or now_ms(),
            )
        )
    if not any(p.role == "customer" for p in people):
        return None  # the customer is gone: Twilio is ending this conference
    people.sort(key=lambda p: (p.role != "customer", p.joined_at, p.call_sid))
    return SeenConference(
        name=name,
        sid=sid,
        status=str(conference.status),
        created_at=_ms(conference.date_created) or now_ms(),
        from_number=from_number,
        participants=people,
    )


async def _role(redis: Redis, username: str | None, participant: Any) -> str:
    """Supervisor or agent: the user's role if Redis still has it, else the flags."""
    if username:
        raw = await redis.hget(keys.USERS, username)
        if raw:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return "supervisor" if json.loads(raw)["role"] == "supervisor" else "agent"
    return "supervisor" if participant.muted or participant.coaching else "agent"


def _client_identity(to: str | None) -> str | None:
    if to and to.startswith("client:") and USERNAME.fullmatch(to[len("client:") :]):
        return to[len("client:") :]
    return None


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


async def _rebuild(unit: Unit, *, seen: SeenConference) -> Rebuilt | None:
    """The unit of work: add the facts that make ``derive`` show ``seen``."""
    record = await unit.conference(seen.name)
    merged = record is not None
    if unit.call_ended(seen.name):
        return None  # its call ended (record or marker): Twilio's list lags
    if record is None:
        record = unit.create_conference(seen.name, seen.from_number)
        record.created_at = seen.created_at
    elif not _partial(record):
        return None  # recorded meanwhile, from its start: its callbacks are the truth
    else:
        record.from_number = seen.from_number
    view = derive(record)
    if view.status == "ended" or view.customer_gone:
        return None  # our facts already say it is over; Twilio's list lags
    known = set(view.milestones.joined) | set(view.milestones.left)
    synthetic = [c.seq for c in record.callbacks.values() if c.seq < 0]
    seq = max(synthetic, default=SYNTHETIC_SEQ)
    if seen.status == "in-progress" and not any(
        c.event == "conference-start" for c in record.callbacks.values()
    ):
        _add(record, Callback(SYNTHETIC_SEQ, "conference-start", seen.started_at, seen.sid))
    people: list[str] = []
    for person in seen.participants:
        if person.call_sid in known:
            continue
        seq += 1
        dial = _dial_for(unit, record, person)
        label = dial.id if dial else person.label
        _add(
            record,
            Callback(
                seq=seq,
                event="participant-join",
                at=person.joined_at,
                conference_sid=seen.sid,
                call_sid=person.call_sid,
                label=label,
                muted=person.muted,
                hold=person.hold,
                coaching=person.coaching,
                end_on_exit=person.end_on_exit,
            ),
        )
        people.append(_describe(person))
    await unit.queued.fetch(unit.redis, unit.queue)  # placed in arrival order among them
    queued = _place_customer(unit, record, seen)
    if not people and not queued:
        return None
    return Rebuilt(seen.name, seen.status, people, queued=queued, merged=merged)


def _add(record: ConferenceRecord, callback: Callback) -> None:
    record.callbacks[callback_key(callback)] = callback


def _dial_for(unit: Unit, record: ConferenceRecord, person: SeenParticipant) -> Dial | None:
    """The answered Dial of an agent or supervisor (existing, or made up now); the
    agent becomes busy with this conference unless engaged elsewhere."""
    if person.role == "customer" or person.username is None:
        return None
    dial = record.dial_for_call(person.call_sid, person.label)
    if dial is None:
        label = person.label or ""
        free = NAME.fullmatch(label) and label not in record.dials
        supervisor = person.role == "supervisor"
        dial = Dial(
            id=label if free else f"reconciled-{person.call_sid}",
            kind=DialKind.SUPERVISOR if supervisor else DialKind.AGENT,
            agent=person.username,
            created_at=person.joined_at,
            call_sid=person.call_sid,
            status="in-progress",
            answered=True,
            mode=_mode(person) if supervisor else None,
        )
        record.dials[dial.id] = dial
    if dial.kind != DialKind.SUPERVISOR:
        agent = unit.agent(person.username)
        if agent.dial is None or agent.conference == record.name:
            unit.set_status(agent, AgentStatus.BUSY)
            agent.conference, agent.dial = record.name, dial.id
    return dial


def _mode(person: SeenParticipant) -> str:
    if person.coaching:
        return "whisper"
    return "listen" if person.muted else "barge"


def _describe(person: SeenParticipant) -> str:
    if person.role == "customer":
        return "customer"
    flags = [name for name in ("muted", "hold", "coaching") if getattr(person, name)]
    who = f"{person.role} {person.username or person.call_sid}"
    return who + (f" ({', '.join(flags)})" if flags else "")


def _place_customer(unit: Unit, record: ConferenceRecord, seen: SeenConference) -> bool:
    """A customer nobody is with goes back in the queue, in the order they called;
    one an agent is with leaves it, and any ring meant for them stops (a callback
    recorded without the Voice URL may have queued and routed them meanwhile)."""
    view = derive(record)
    customer = next((p for p in view.participants.values() if p.role == "customer"), None)
    if customer is None:
        return False
    if view.agents_present():
        unit.dequeue(record.name, "routed")
        for dial in record.dials.values():
            stray = dial.kind == DialKind.AGENT and dial.call_sid not in view.milestones.joined
            if stray and dial_active(view, dial) and not dial.cancel_reason:
                call_off(unit, record.name, dial, "reconciled")
        return False
    if customer.hold and view.status == "in-progress":
        record.customer_auto_held = True  # already on the wait music: do not restart it
    if record.name in unit.queue or dials_under_way(record, view):
        return False
    unit.enqueue(record.name, record.from_number)
    unit.queued[record.name].queued_at = seen.created_at
    unit.queue.remove(record.name)
    later = [
        i
        for i, name in enumerate(unit.queue)
        if name in unit.queued and unit.queued[name].queued_at > seen.created_at
    ]
    unit.queue.insert(later[0] if later else len(unit.queue), record.name)
    return True


# -- the command line -------------------------------------------------------------


async def apply_effects(gateway: TwilioGateway, effects: list[Effect]) -> list[str]:
    """Carry out the participant updates and hang-ups settling asked for, outside
    the app (``warmline reconcile``), with the runner's ``request``; routing is left
    to the app's sweeper. Returns one line per action that failed."""
    failed: list[str] = []
    for effect in effects:
        if isinstance(effect, HangUp | UpdateParticipant):
            try:
                await request(gateway, effect)
            except GatewayError as exc:
                failed.append(str(exc))
    return failed


async def run_command(settings: Settings, redis: Redis) -> int:
    """``warmline reconcile``: one line per conference, a summary, exit 0; or one
    clear line and exit 1 when Redis or Twilio cannot be reached."""
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        print(f"warmline: cannot reach Redis: {redis_reason(exc)}", file=sys.stderr)
        return 1
    gateway = TwilioGateway(settings=settings)
    await gateway.open()
    try:
        report = await reconcile(redis, gateway, settings)
        failed = await apply_effects(gateway, report.effects)
        with contextlib.suppress(RedisError, OSError):
            # The app need not do it again for this Redis (a running claim is left alone).
            await redis.set(MARKER, f"done:{now_ms()}", nx=True)
    except GatewayError as exc:
        print(f"warmline: {exc.says(settings.api_base_url)}", file=sys.stderr)
        return 1
    except (RedisError, OSError, Contended) as exc:
        print(f"warmline: cannot write to Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await gateway.close()
    for rebuilt in report.rebuilt:
        print(rebuilt.line())
    for name in report.ended:
        print(f"ended {name}: Twilio had ended it")
    for line in report.problems + [f"warning: {f}" for f in failed]:
        print(line)
    print(report.summary())
    return 0


# -- automatically, in the app ---------------------------------------------------------


async def claim(redis: Redis) -> str | None:
    """Claim the reconcile of an empty Redis: a token if it is ours to do, else None
    (already reconciled, or another process is at it)."""
    token = "running:" + secrets.token_hex(8)
    return token if await redis.set(MARKER, token, nx=True, ex=RUNNING_SECONDS) else None


async def finish(redis: Redis, token: str, done: bool) -> None:
    """Mark this Redis reconciled (``done``), or let the claim expire for a retry."""
    value = f"done:{now_ms()}" if done else ""
    await redis.eval(_FINISH, 1, MARKER, token, value, str(RETRY_SECONDS))  # type: ignore[misc]


class AutoReconcile(ServingExtension):
    """Reconciles at start-up and whenever Redis is found empty, in the background:
    the server starts serving at once and webhooks never wait for Twilio's lists."""

    key = "reconcile"

    def __init__(self, app: Quart | None = None) -> None:
        self.app: Quart | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_report: ReconcileReport | None = None
        self.runs = 0
        self._stop = asyncio.Event()
        if app is not None:
            self.init_app(app)

    @property
    def redis(self) -> Redis:
        assert self.app is not None
        return RedisExtension.of(self.app).client

    async def start(self) -> None:
        # The claim is taken before serving (one bounded Redis command) so requests
        # never see the marker appear; the REST work runs in the background.
        self._stop.clear()
        watch_failovers(self.redis, MARKER)  # a new Sentinel master: reconcile again
        token = None
        try:
            async with asyncio.timeout(START_BUDGET_SECONDS):
                token = await claim(self.redis)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("reconcile check deferred: Redis not answering (%s)", exc)
        self._task = asyncio.create_task(self._watch(token), name="warmline-reconcile")

    async def stop(self) -> None:
        # The flag as well as the cancellation: redis-py may turn a cancellation that
        # lands in a read into its own timeout error, which the loop would sleep off.
        self._stop.set()
        await cancel(self._task)

    async def _watch(self, token: str | None) -> None:
        while True:
            try:
                if token is None:
                    token = await claim(self.redis)
                if token is not None:
                    await self.run(token)
            except RuntimeError:
                return  # Redis or the gateway is closed: the app is shutting down
            except (RedisError, OSError) as exc:
                if self._stop.is_set():
                    return  # stopping: the cancellation reached a Redis read as its timeout
                log.warning("reconcile check skipped: %s", exc)
            token = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CHECK_SECONDS)
            if self._stop.is_set():
                return

    async def run(self, token: str) -> ReconcileReport | None:
        """Reconcile under ``token``'s claim; its effects go to the app's runner."""
        assert self.app is not None
        settings = settings_of(self.app)
        gateway = TwilioGateway.of(self.app)
        try:
            report = await reconcile(self.redis, gateway, settings)
        except (GatewayError, Contended) as exc:
            log.warning("reconcile failed, retrying in %d s: %s", RETRY_SECONDS, exc)
            await finish(self.redis, token, done=False)
            return None
        Runner.of(self.app).spawn(report.effects)
        await finish(self.redis, token, done=True)
        self.runs += 1
        self.last_report = report
        for rebuilt in report.rebuilt:
            log.warning("reconcile: %s", rebuilt.line())
        for name in report.ended:
            log.warning("reconcile: ended %s: Twilio had ended it", name)
        if report.rebuilt or report.ended or report.problems:
            log.warning("%s", report.summary())
        return report
