"""The directory of external numbers on the JSON API (docs/api.md, SPEC §10): every
user reads it (agents pick external transfer targets from it); supervisors add and
remove entries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_request

from console.domain import directory
from console.ids import DIRECTORY_ID
from console.redis_ext import get_redis
from console.web.auth import login_required, role_required
from console.web.errors import error_response

blueprint = Blueprint("directory", __name__, url_prefix="/api/directory")


class EntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    number: str = Field(min_length=2, max_length=16)


class EntryOut(BaseModel):
    id: str
    name: str
    number: str


class DirectoryOut(BaseModel):
    entries: list[EntryOut]


@blueprint.get("")
@document_response(DirectoryOut, 200)
@login_required
async def get_directory() -> Response:
    """Every entry, by name."""
    return jsonify({"entries": await directory.entries(get_redis())})


@blueprint.post("")
@document_response(EntryOut, 201)
@role_required("supervisor")
@validate_request(EntryBody)
async def post_entry(data: EntryBody) -> tuple[Response, int]:
    """A new entry: a name and a valid E.164 number (400 otherwise)."""
    if not data.name.strip():
        return error_response("name: who the number reaches", 400), 400
    return jsonify(await directory.add(get_redis(), data.name, data.number)), 201


@blueprint.delete("/<entry_id>")
@document_response(EntryOut, 200)
@role_required("supervisor")
async def delete_entry(entry_id: str) -> Response:
    """Remove an entry (a transfer under way to its number goes on)."""
    if not DIRECTORY_ID.fullmatch(entry_id):
        return error_response(f"no directory entry {entry_id}", 404)
    entries = {e["id"]: e for e in await directory.entries(get_redis())}
    await directory.remove(get_redis(), entry_id)
    return jsonify(entries[entry_id])
