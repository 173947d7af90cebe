"""A long call's conference callbacks kept folded, so that one more callback costs the
same on the 500th as on the first.

A conference record holds ``folded`` (console/domain/records.py ``Folded``): the fold
of every callback with SequenceNumber <= ``folded.through``, and in ``callbacks`` only
those above it (the tail). ``derive`` folds the tail onto a copy of ``folded``, which
is exactly the fold of all of them in SequenceNumber order: every folded callback is
below every callback of the tail, and the fold uses nothing of the record that may
change later (``derive.resolve`` reads the dials then).

The folded callbacks themselves are kept apart, in a Redis list (``keys.folded_callbacks``) in
the order they arrived, its first ``folded.count`` entries being theirs. The common
path never reads it. It is read when a callback arrives at or below ``through`` (late
by more than ``TAIL_KEEP`` places, or a duplicate of a folded one): a duplicate
changes nothing, a new one is appended and ``folded`` is refolded from the whole list
(rare, and its cost grows with the call). ``folded.count`` moves with every append, so
the unit's check of the record's contents (console/domain/unit_state.py) covers the
list too.

The checkpoint advances when the tail passes ``TAIL_MAX`` callbacks: all but the
newest ``TAIL_KEEP`` are folded and appended to the list (one RPUSH every
``TAIL_MAX - TAIL_KEEP`` callbacks). Never folded: the conference-end the app records
itself (``APP_END_SEQ``, above any SequenceNumber Twilio sends), and the callbacks of
a record without the caller's number, which reconcile (console/telephony/reconcile.py)
reads whole from ``callbacks``. Reconcile's rebuilt facts (negative SequenceNumbers)
fold like any other.
"""

from __future__ import annotations

from console.domain.derive import FOLD_START, fold
from console.domain.records import APP_END_SEQ, Callback, ConferenceRecord, Folded

TAIL_MAX = 8  # callbacks a record holds unfolded before the oldest are folded...
TAIL_KEEP = 4  # ...all but the newest this many: one arriving fewer places late lands in them


def callback_key(callback: Callback) -> str:
    """One key per distinct callback, so a duplicate delivery is recognised."""
    return f"{callback.seq}:{callback.event}:{callback.call_sid or ''}"


def below(record: ConferenceRecord, seq: int) -> bool:
    """A callback at ``seq`` belongs with the folded ones (it needs the list)."""
    return record.folded is not None and seq <= record.folded.through


def needs_history(record: ConferenceRecord, callback: Callback) -> bool:
    """``add`` will need the folded callbacks for ``callback`` (one not in the tail,
    at or below the checkpoint)."""
    return callback_key(callback) not in record.callbacks and below(record, callback.seq)


def add(record: ConferenceRecord, callback: Callback, history: list[Callback] | None) -> bool:
    """Record a conference callback; False when it was a duplicate. ``history``: the
    folded callbacks, given when ``needs_history`` (appended to, then)."""
    key = callback_key(callback)
    if key in record.callbacks:
        return False
    if not below(record, callback.seq):
        record.callbacks[key] = callback
        return True
    if history is None:
        raise ValueError(f"conference {record.name}: a callback below its folded ones")
    return place(record, history, callback)


def refold(history: list[Callback], through: int, name: str) -> Folded:
    """``folded`` from the whole list (in arrival order: ties in SequenceNumber fold in
    the order they came, as in one fold of the whole record)."""
    state = Folded(through=through, count=len(history))
    fold(state, sorted(history, key=_seq), name)
    return state


def place(record: ConferenceRecord, history: list[Callback], callback: Callback) -> bool:
    """Record ``callback``, at or below ``record.folded.through``, given the folded
    ``history`` (appended to): False when it was folded already."""
    assert record.folded is not None
    key = callback_key(callback)
    if any(callback_key(c) == key for c in history):
        return False
    history.append(callback)
    record.folded = refold(history, record.folded.through, record.name)
    return True


def settle_below(record: ConferenceRecord, history: list[Callback]) -> list[Callback]:
    """Callbacks written straight into ``callbacks`` at or below the checkpoint, moved to
    where they belong; returns those appended to ``history``."""
    through = record.folded.through if record.folded else FOLD_START
    stray = [c for c in record.callbacks.values() if c.seq <= through]
    if not stray:
        return []
    record.callbacks = {k: c for k, c in record.callbacks.items() if c.seq > through}
    added = len(history)
    for callback in stray:
        place(record, history, callback)
    return history[added:]


def unfoldable(record: ConferenceRecord) -> bool:
    """Callbacks that stay in ``callbacks``: reconcile reads them there for a record
    without the caller's number (one made from callbacks alone)."""
    return record.from_number is None


def advance(
    record: ConferenceRecord, tail_max: int | None = None, tail_keep: int | None = None
) -> list[Callback]:
    """Fold all but the newest ``tail_keep`` (``TAIL_KEEP``) callbacks of a tail longer
    than ``tail_max`` (``TAIL_MAX``); returns the callbacks folded, in arrival order,
    for the list."""
    tail_max = TAIL_MAX if tail_max is None else tail_max
    tail_keep = TAIL_KEEP if tail_keep is None else tail_keep
    if unfoldable(record):
        return []
    tail = [c.seq for c in record.callbacks.values() if c.seq < APP_END_SEQ]
    if len(tail) <= max(tail_max, tail_keep):
        return []
    through = sorted(tail)[-tail_keep - 1]
    folding = [c for c in record.callbacks.values() if c.seq <= through]
    state = record.folded or Folded(through=FOLD_START)
    fold(state, sorted(folding, key=_seq), record.name)
    state.through, state.count = through, state.count + len(folding)
    record.folded = state
    record.callbacks = {k: c for k, c in record.callbacks.items() if c.seq > through}
    return folding


def _seq(callback: Callback) -> int:
    return callback.seq
