"""``since``/``until`` values people write: ``7d``, ``24h``, ``2w``, ``2025-01-31``, datetimes."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .. import errors

_AGO = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: datetime | date | str | None, *, param: str = "since",
               now: datetime | None = None) -> datetime | None:
    """An aware UTC datetime for ``value``; relative forms count back from ``now``.

    Accepts a datetime (naive = UTC), a date (its midnight UTC), ``N m|h|d|w``
    ("7d" = seven days ago) or ISO text (``2025-01-31``, ``2025-01-31T12:00``).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise errors.InvalidRequestError(
            f"{param} must be a datetime, a date, 'Nd'/'Nh'/'Nw'/'Nm' or ISO text, "
            f"got {type(value).__name__}", param=param)
    m = _AGO.match(value)
    if m:
        now = now or datetime.now(timezone.utc)
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidRequestError(
            f"{param}={value!r} is not a time: use e.g. 7d, 24h, 2w, 30m, 2025-01-31 or "
            f"2025-01-31T12:00", param=param) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed
