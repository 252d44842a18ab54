"""Names users group and filter by -> SQL expressions and a WHERE clause.

Dimensions: the columns in `COLUMN_DIMENSIONS`, ``kind`` (chat or embed), the time buckets ``hour``, ``day``,
``week`` (labelled by its Monday) and ``month`` (UTC), and any tag, as
``tag:NAME`` or the bare ``NAME`` when it is not one of the above. Filters take
the same names; a value may be a string, a list (any of), or None (missing).
A ``section`` filter also matches the sections nested inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .. import errors
from .rows import iso
from .store import Dialect

COLUMN_DIMENSIONS = frozenset({
    "provider", "model", "requested_model", "status", "section", "rule", "shadow_rule",
    "fallback_from", "error_class", "usage_source", "price_version", "saved_reason", "cache_status",
    "deployment",
})
TIME_DIMENSIONS = ("hour", "day", "week", "month")


def dimension(name: str, dialect: Dialect) -> tuple[str, list[Any]]:
    """SQL (and its bound parameters) for one grouping/filter name."""
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidRequestError("a summary dimension must be a non-empty string",
                                         param="by")
    name = name.strip()
    if name in COLUMN_DIMENSIONS:
        return name, []
    if name == "kind":  # rows from before embeddings have none: they were all chat calls
        return "COALESCE(kind, 'chat')", []
    if name in TIME_DIMENSIONS:
        return dialect.bucket(name, "started_at"), []
    tag = name.removeprefix("tag:")
    if not tag or any(c in tag for c in '"\\') or not tag.isprintable():
        raise errors.InvalidRequestError(
            f"bad dimension {name!r}: use one of {', '.join(sorted(COLUMN_DIMENSIONS | {'kind'}))}, "
            f"{', '.join(TIME_DIMENSIONS)}, or tag:NAME", param="by")
    return dialect.tag("tags"), [dialect.tag_param(tag)]


def where_clause(dialect: Dialect, since: datetime | None = None, until: datetime | None = None,
                 where: Mapping[str, Any] | None = None) -> tuple[str, list[Any]]:
    """``WHERE ...`` (or "") and its parameters: ``since <= started_at < until`` plus filters."""
    parts: list[str] = []
    params: list[Any] = []
    if since is not None:
        parts.append("started_at >= ?")
        params.append(iso(_as_datetime(since, "since")))
    if until is not None:
        parts.append("started_at < ?")
        params.append(iso(_as_datetime(until, "until")))
    for key, value in (where or {}).items():
        sql, key_params = dimension(key, dialect)
        clause, value_params = _match(key, value)
        params.extend(_expand(clause, key_params, value_params))
        parts.append(clause.replace("{k}", sql))
    return (" WHERE " + " AND ".join(parts), params) if parts else ("", params)


def _match(key: str, value: Any) -> tuple[str, list[Any]]:
    """A clause over the placeholder ``{k}`` (the dimension) and its value parameters."""
    if value is None:
        return "{k} IS NULL", []
    if isinstance(value, (list, tuple, set, frozenset)):
        values = [_scalar(key, v) for v in value]
        if not values:
            return "1 = 0", []
        return "{k} IN (" + ", ".join("?" for _ in values) + ")", values
    value = _scalar(key, value)
    if key == "section":
        return "({k} = ? OR substr({k}, 1, ?) = ?)", [value, len(value) + 1, value + "/"]
    return "{k} = ?", [value]


def _expand(clause: str, key_params: list[Any], value_params: list[Any]) -> list[Any]:
    """Parameters in textual order: each ``{k}`` brings the key's, each ``?`` after it a value."""
    out: list[Any] = []
    values = iter(value_params)
    i = 0
    while i < len(clause):
        if clause.startswith("{k}", i):
            out.extend(key_params)
            i += 3
            continue
        if clause[i] == "?":
            out.append(next(values))
        i += 1
    return out


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise errors.InvalidRequestError(
            f"filter {key!r} needs a string (or a list of strings), got {type(value).__name__}",
            param=f"where.{key}")
    return str(value)


def _as_datetime(value: Any, param: str) -> datetime:
    if not isinstance(value, datetime):
        raise errors.InvalidRequestError(f"{param} must be a datetime, got {value!r}",
                                         param=param)
    return value


def group_keys(by: Sequence[str] | str | None) -> list[str]:
    """``by`` as a list of names (a comma-separated string is accepted), duplicates kept out."""
    if by is None:
        return []
    if isinstance(by, str):
        by = [p for p in by.split(",")]
    keys: list[str] = []
    for name in by:
        name = name.strip() if isinstance(name, str) else name
        if name not in keys:
            keys.append(name)
    return keys
