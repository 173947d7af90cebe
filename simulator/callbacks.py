"""Webhook delivery: every request the simulator makes to the app, signed as Twilio
signs it, with connection-override retries and optional chaos.

Status callbacks are queued per key (a conference or call SID) and delivered by a
worker per key, in order. With ``Chaos`` the worker lets a buffer fill for a short
seeded window, then shuffles it, duplicates some entries and delays each one:
callbacks arrive late, twice and out of order, which is what the app must cope
with (docs/twilio.md). TwiML fetches (``fetch``) are synchronous for the call and
never chaotic: Twilio waits for the answer before it can go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp

from simulator.wire import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, Overrides, sign, split_fragment

log = logging.getLogger(__name__)
RETRY_PAUSE_SECONDS = 0.05
# An idle connection is dropped after this, under Hypercorn's 5 s keep-alive (aiohttp's
# own default is 15 s): a callback sent on a connection the server is closing fails
# as "ct" and goes again only as far as the retry policy allows.
KEEPALIVE_SECONDS = 3.0


@dataclass(frozen=True)
class Chaos:
    """Seeded disorder for status callbacks (real seconds, probabilities 0..1)."""

    seed: int | None = None
    window: float = 0.05
    max_delay: float = 0.05
    duplicate: float = 0.25
    reorder: bool = True


@dataclass
class Delivery:
    """One status callback as sent, and how it ended (for introspection and tests)."""

    key: str
    url: str
    params: dict[str, str]
    method: str = "POST"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    statuses: list[int | str] = field(default_factory=list)
    signature: str = ""
    signed_url: str = ""


@dataclass
class Answer:
    """A fetched webhook answer; ``status`` 0 when no HTTP answer came at all."""

    status: int
    content_type: str
    text: str


def _target(url: str, params: dict[str, str], method: str) -> tuple[str, dict[str, str] | None]:
    """GET puts the parameters in the query string (and the signature covers only
    the URL); POST sends them as the form."""
    if method.upper() == "GET":
        joiner = "&" if "?" in url else "?"
        return (url + joiner + urlencode(params) if params else url), None
    return url, params


class Deliverer:
    """Sends webhooks over one aiohttp session; see the module docstring."""

    def __init__(self, auth_token: str, chaos: Chaos | None = None) -> None:
        self.auth_token = auth_token
        self.chaos = chaos
        self.rng = random.Random(chaos.seed if chaos else None)
        self.sent: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None
        self._buffers: dict[str, list[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the simulator is not started")
        return self._session

    # -- synchronous fetches (TwiML) -----------------------------------------------------

    async def fetch(self, url: str, params: dict[str, str], method: str = "POST") -> Answer:
        """Request TwiML (Voice URL, action, waitUrl, holdUrl), signed, honouring the
        URL's connection overrides like any other webhook."""
        base, overrides = split_fragment(url)
        return await self._attempts(base, params, method, overrides, None)

    # -- status callbacks ------------------------------------------------------------------

    def send(self, key: str, url: str, params: dict[str, str], method: str = "POST") -> Delivery:
        """Queue a status callback for ``key``'s worker; returns at once."""
        delivery = Delivery(key, url, params, method.upper())
        self._buffers.setdefault(key, []).append(delivery)
        self._count(+1)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key))
        return delivery

    @property
    def pending(self) -> int:
        return self._pending

    async def idle(self) -> None:
        """Return once every queued status callback has been delivered (or given up)."""
        await self._idle.wait()

    def _count(self, step: int) -> None:
        self._pending += step
        if self._pending == 0:
            self._idle.set()
        else:
            self._idle.clear()

    async def _work(self, key: str) -> None:
        try:
            while self._buffers.get(key):
                if self.chaos is not None:
                    await asyncio.sleep(self.rng.uniform(0, self.chaos.window))
                batch = self._buffers.pop(key, [])
                for delivery in self._disorder(batch):
                    await self._deliver(delivery)
                    self._count(-1)
        finally:
            # No await between the empty check and here, so no send() is missed.
            self._workers.pop(key, None)

    def _disorder(self, batch: list[Delivery]) -> list[Delivery]:
        """Shuffle and duplicate a batch under chaos; the identity otherwise."""
        chaos = self.chaos
        if chaos is None:
            return batch
        if chaos.reorder:
            self.rng.shuffle(batch)
        out: list[Delivery] = []
        for delivery in batch:
            out.append(delivery)
            if self.rng.random() < chaos.duplicate:
                twin = Delivery(delivery.key, delivery.url, delivery.params, delivery.method)
                twin.token = delivery.token
                out.insert(self.rng.randrange(len(out) + 1), twin)
                self._count(+1)
        return out

    async def _deliver(self, delivery: Delivery) -> None:
        if self.chaos is not None:
            await asyncio.sleep(self.rng.uniform(0, self.chaos.max_delay))
        base, overrides = split_fragment(delivery.url)
        self.sent.append(delivery)
        try:
            await self._attempts(base, delivery.params, delivery.method, overrides, delivery)
        except Exception:  # a callback failure must never break the simulation
            log.exception("status callback to %s failed", base)

    async def _attempts(
        self,
        url: str,
        params: dict[str, str],
        method: str,
        overrides: Overrides,
        delivery: Delivery | None,
    ) -> Answer:
        """The first try plus up to ``rc`` retries for the failures ``rp`` names; every
        attempt carries the same ``I-Twilio-Idempotency-Token``."""
        token = delivery.token if delivery else uuid.uuid4().hex
        answer = Answer(0, "", "")
        for attempt in range(overrides.retry_count + 1):
            if attempt:
                await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
            answer, failure = await self._once(url, params, method, overrides, token, delivery)
            if failure is None or not overrides.retries_on(failure):
                break
        return answer

    async def _once(
        self,
        url: str,
        params: dict[str, str],
        method: str,
        overrides: Overrides,
        token: str,
        delivery: Delivery | None,
    ) -> tuple[Answer, str | None]:
        target, form = _target(url, params, method)
        signature = sign(target, form or {}, self.auth_token)
        if delivery is not None:
            delivery.signature, delivery.signed_url = signature, target
        headers = {SIGNATURE_HEADER: signature, IDEMPOTENCY_HEADER: token}
        timeout = aiohttp.ClientTimeout(
            total=overrides.total_timeout,
            sock_connect=overrides.connect_timeout,
            sock_read=overrides.read_timeout,
        )
        try:
            async with self.session.request(
                method, target, data=form, headers=headers, timeout=timeout
            ) as response:
                text = await response.text()
                answer = Answer(response.status, response.content_type, text)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            failed = "rt" if isinstance(exc, aiohttp.ServerTimeoutError) else "ct"
            return self._note(delivery, failed), failed
        except TimeoutError:
            return self._note(delivery, "rt"), "rt"
        if delivery is not None:
            delivery.statuses.append(answer.status)
        if answer.status >= 500:
            return answer, "5xx"
        if answer.status >= 400:
            return answer, "4xx"
        return answer, None

    @staticmethod
    def _note(delivery: Delivery | None, failure: str) -> Answer:
        if delivery is not None:
            delivery.statuses.append(failure)
        return Answer(0, "", "")
