"""The supervisors' directory of external numbers (SPEC §10): the numbers an agent may
transfer a customer to, besides those matching EXTERNAL_TRANSFER_ALLOW. Anything else
is refused: an open transfer to any number is toll fraud waiting to happen."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException
from redis.asyncio import Redis

from console.config import Settings
from console.domain import keys
from console.domain.errors import BadRequest, NotFound

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
ENTRIES_MAX = 500


def valid_number(number: str) -> bool:
    """An E.164 number a phone network would route (not merely its shape)."""
    if not E164.fullmatch(number):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except NumberParseException:
        return False


async def entries(redis: Redis) -> list[dict[str, Any]]:
    """Every entry, by name."""
    found = [json.loads(raw) for raw in (await redis.hvals(keys.DIRECTORY))]
    return sorted(found, key=lambda e: (e["name"].lower(), e["id"]))


async def add(redis: Redis, name: str, number: str) -> dict[str, Any]:
    """A new entry; 400 for a number that is not a valid E.164 one."""
    if not valid_number(number):
        raise BadRequest("number: a valid E.164 number, such as +14155550100")
    if await redis.hlen(keys.DIRECTORY) >= ENTRIES_MAX:
        raise BadRequest(f"the directory holds at most {ENTRIES_MAX} entries")
    entry = {"id": "DE" + secrets.token_hex(8), "name": name.strip(), "number": number}
    await redis.hset(keys.DIRECTORY, entry["id"], json.dumps(entry))
    return entry


async def remove(redis: Redis, entry_id: str) -> None:
    if not await redis.hdel(keys.DIRECTORY, entry_id):
        raise NotFound(f"no directory entry {entry_id}")


async def allowed(redis: Redis, settings: Settings, number: str) -> bool:
    """May an agent transfer a customer to ``number``: in the directory, or under one
    of EXTERNAL_TRANSFER_ALLOW's prefixes (and a valid number either way)."""
    if not valid_number(number):
        return False
    if any(number.startswith(prefix) for prefix in settings.external_transfer_allow):
        return True
    return any(e["number"] == number for e in await entries(redis))
