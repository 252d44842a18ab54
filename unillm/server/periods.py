"""Calendar periods of per-key budgets (UTC): where one starts and when it resets."""

from __future__ import annotations

from datetime import datetime, timedelta


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Start of the calendar period (UTC) containing ``now``, and when it resets."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "monthly":
        start = day.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start, nxt
    return None, None
