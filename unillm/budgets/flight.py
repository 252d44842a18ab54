"""The write-ahead description of a call in flight, kept in its budget hold's row.

Admission writes one row per call (`store.add_flight`): the hold and, in its ``call``
column, what the call's ledger row needs if its process dies before it settles — a few
fields as JSON, built from the `Call` without making a full `CallRecord` (that is done
only for the rare call whose lease lapses: `lapsed_record`).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..ledger.records import new_id

#: the `Call` attributes kept, and the `CallRecord` fields they become
_FIELDS = ("provider", "model", "requested_model", "started_at", "tags", "call_id", "attempt", "stream",
           "kind", "section", "rule", "shadow_rule", "fallback_from", "deployment", "fingerprint", "inputs")

#: one encoder for every flight row (``json.dumps`` with options builds one per call)
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode

#: JSON text of the parts of a description that repeat from call to call (model, tags, and
#: attempt to deployment), by their values; past `_PARTS_MAX` the table starts over
_PARTS: dict[tuple[Any, ...], str] = {}
_PARTS_MAX = 4096


def in_flight(call: Any) -> str:
    """``call`` as the JSON its lapsed row is made from (sets its ``call_id`` as a row would):
    a JSON list in `_FIELDS` order, made of the parts seen before (`_part`) and the few that
    are new for every call (start, id, cache key)."""
    if call.call_id is None:
        call.call_id = new_id()
    ref = call.ref
    head = _part(("m", ref.provider, ref.model, call.requested_model))
    tags = _part(("t", *call.tags.items()))
    tail = _part(("r", call.attempt or 1, call.stream, call.kind, call.section, call.rule, call.shadow_rule,
                  call.fallback_from, call.deployment))
    key = "null" if call.cache_key is None else _ENCODE(call.cache_key)
    inputs = "null" if call.inputs is None else str(int(call.inputs))
    return f'[{head},{_ENCODE(call.at.isoformat())},{tags},{_ENCODE(call.call_id)},{tail},{key},{inputs}]'


def _part(values: tuple[Any, ...]) -> str:
    """The JSON of ``values[1:]`` (``"t"``: the tags, as an object), without its brackets."""
    got = _PARTS.get(values)
    if got is None:
        if len(_PARTS) >= _PARTS_MAX:
            _PARTS.clear()
        got = _PARTS[values] = _ENCODE(dict(values[1:]) if values[0] == "t" else list(values[1:]))
        if values[0] != "t":
            got = _PARTS[values] = got[1:-1]
    return got


def lapsed_record(flight_id: str, text: str, amount: Decimal, now: datetime) -> Any:
    """The ``unknown`` ledger row of a call whose hold lapsed: counted at the hold's worst case."""
    from ..ledger import CallRecord
    fields: dict[str, Any] = dict(zip(_FIELDS, json.loads(text)))
    fields["started_at"] = datetime.fromisoformat(fields["started_at"])
    fields["sent_model"] = fields["model"]
    return CallRecord(id=flight_id, status="unknown", total_usd=amount, ended_at=now, error_class="LeaseExpired",
                      **fields)


def describe(text: str | None) -> dict[str, Any]:
    """The fields a flight row keeps of its call (none for a hold written without one)."""
    return dict(zip(_FIELDS, json.loads(text))) if text else {}
