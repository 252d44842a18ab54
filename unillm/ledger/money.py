"""Exact money in integer columns.

A USD amount is stored as two integers, ``nano`` (whole 1e-9 USD, any sign) and
``atto`` (the rest, in 1e-18 USD, ``0 <= atto < 10**9``). SQL ``SUM`` over each
column is exact integer arithmetic (no float anywhere), fast, and cannot
overflow before nine billion dollars; `join` turns the two sums back into one
`Decimal`. Amounts finer than 1e-18 USD are rounded half-even once, in `normalize`,
when a record is made, so what a record says is exactly what summaries add up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

_ATTO = Decimal("1e-18")
_NANO_PER_ATTO = 10**9


def normalize(value: Decimal | int | str | None) -> Decimal | None:
    """``value`` as a finite Decimal with at most 18 decimal places (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (float, bool)):
        raise TypeError(f"money must be Decimal, int or str, not {type(value).__name__}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"money must be finite, got {d}")
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -18:
        d = d.quantize(_ATTO, rounding=ROUND_HALF_EVEN)
    return d


def split(value: Decimal | None) -> tuple[int | None, int | None]:
    """``value`` (already normalized) as ``(nano, atto)`` integers."""
    if value is None:
        return None, None
    atto_total = int(value.scaleb(18))  # exact: at most 18 decimal places
    return divmod(atto_total, _NANO_PER_ATTO)


def join(nano: int | None, atto: int | None) -> Decimal:
    """The exact Decimal for integer sums of the two columns (None counts as 0)."""
    total = (nano or 0) * _NANO_PER_ATTO + (atto or 0)
    if total % 10**18 == 0:
        return Decimal(total // 10**18)
    return Decimal(total).scaleb(-18).normalize()


def as_text(value: Decimal | None) -> str | None:
    """Plain (non-scientific) decimal text, for storage and export."""
    if value is None:
        return None
    return format(value, "f")
