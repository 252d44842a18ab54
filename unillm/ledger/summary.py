"""Summaries: calls, errors, tokens, exact cost and exact latency percentiles per group.

One portable SQL statement per summary (or per shard of the table, run in
parallel, for big ledgers): ``GROUP BY`` the requested keys, integer sums of
counts, tokens and money, and each group's latencies collected as text, from
which Python takes exact nearest-rank p50/p95. Money sums are exact
(`money.join`): a summary's ``cost_usd`` equals the Decimal sum of its records'
``total_usd``. Partial rows of the same group (from shards) merge by addition.

No sum can overflow: SQLite's ``SUM`` of 64-bit integers raises "integer overflow"
past 9.2e18 (10^6 calls of $6M each, in nano-dollars, is 6e21), so every wide column
(tokens, and the nano part of money) is summed split in two, ``SUM(c / 10^9)`` and
``SUM(c % 10^9)``, which Python joins exactly. Each half stays below 2^63 until
about 10^9 rows at the per-call bound (`facade.MAX_TOKENS`); integer division and
remainder truncate toward zero on both backends, so ``q * 10^9 + r == c`` for any sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from . import money
from .query import dimension, group_keys, where_clause
from .records import TOKEN_FIELDS
from .rows import TABLE
from .store import Dialect

#: the columns of every summary row after the group keys
METRICS: tuple[str, ...] = ("calls", "errors", "cache_hits", "denied", "unpriced", *TOKEN_FIELDS,
                            "cost_usd", "saved_usd", "p50_latency_ms", "p95_latency_ms")

_SPLIT = 10**9


def _wide(column: str) -> tuple[str, str]:
    """A sum that cannot overflow, as two aggregates (see the module docstring)."""
    return f"SUM({column} / {_SPLIT})", f"SUM({column} % {_SPLIT})"


#: (aggregates, how many SQL columns) per summed value, in order
_AGGREGATES = (
    "COUNT(*)",
    "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN status = 'cache_hit' THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN status IN ('budget_denied', 'rule_denied') THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN status = 'unpriced' THEN 1 ELSE 0 END)",
    *(a for c in TOKEN_FIELDS for a in _wide(c)),
    *_wide("total_nano"), "SUM(total_atto)", *_wide("saved_nano"), "SUM(saved_atto)",
)
#: values per summary row: 5 counts, the tokens, total (nano, atto), saved (nano, atto)
_N_COUNTS = 5 + len(TOKEN_FIELDS)
_N_SUMS = _N_COUNTS + 4
#: for each value, the SQL columns it is made of (1, or 2 for a split sum)
_WIDTHS = (1,) * 5 + (2,) * len(TOKEN_FIELDS) + (2, 1, 2, 1)
_N_COLUMNS = sum(_WIDTHS)


def build(dialect: Dialect, by: Sequence[str] | str | None = None,
          since: datetime | None = None, until: datetime | None = None,
          where: Mapping[str, Any] | None = None,
          shard: bool = False, retries: bool = True) -> tuple[str, list[Any], list[str]]:
    """The summary SQL, its parameters, and the group key names (the row's first columns).

    ``retries=False`` leaves out the rows of attempts that failed and were retried (every
    HTTP attempt is a row; by default all count, since a vendor may bill them).

    With ``shard=True`` the SQL ends with ``seq >= ? AND seq < ?``: append the
    range's two bounds to the parameters.
    """
    keys = group_keys(by)
    key_sql: list[str] = []
    params: list[Any] = []
    for i, name in enumerate(keys):
        sql, key_params = dimension(name, dialect)
        key_sql.append(f"{sql} AS k{i}")
        params.extend(key_params)
    filters, filter_params = where_clause(dialect, since, until, where)
    params.extend(filter_params)
    if not retries:
        filters += (" AND " if filters else " WHERE ") + "retried = 0"
    if shard:
        filters += (" AND " if filters else " WHERE ") + "seq >= ? AND seq < ?"
    group = [f"k{i}" for i in range(len(keys))]
    columns = [*key_sql, *_AGGREGATES, f"{dialect.collect('latency_ms')} AS latencies"]
    sql = f"SELECT {', '.join(columns)} FROM {TABLE}{filters}"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    return sql, params, keys


def to_rows(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Merge partial rows into one dict per group, sorted by the keys."""
    n = len(keys)
    groups: dict[tuple[Any, ...], tuple[list[int], list[str]]] = {}
    for row in rows:
        if not row[n]:  # COUNT(*) = 0: an ungrouped summary of nothing
            continue
        key = tuple(row[:n])
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = ([0] * _N_SUMS, [])
        sums = acc[0]
        for i, v in enumerate(_joined(row[n:n + _N_COLUMNS])):
            if v:
                sums[i] += v
        if row[-1]:
            acc[1].append(row[-1])
    return [_row(keys, key, sums, latencies)
            for key, (sums, latencies) in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))]


def _joined(columns: Sequence[Any]) -> list[int]:
    """The summed values of one SQL row, split sums joined back (None counts as 0)."""
    out: list[int] = []
    i = 0
    for width in _WIDTHS:
        if width == 1:
            out.append(int(columns[i] or 0))
        else:
            out.append(int(columns[i] or 0) * _SPLIT + int(columns[i + 1] or 0))
        i += width
    return out


def _row(keys: Sequence[str], key: tuple[Any, ...], sums: list[int],
         latencies: list[str]) -> dict[str, Any]:
    d: dict[str, Any] = dict(zip(keys, key))
    d.update(zip(METRICS, sums[:_N_COUNTS]))
    total_nano, total_atto, saved_nano, saved_atto = sums[_N_COUNTS:]
    d["cost_usd"] = money.join(total_nano, total_atto)
    d["saved_usd"] = money.join(saved_nano, saved_atto)
    values = sorted(map(float, ",".join(latencies).split(","))) if latencies else []
    d["p50_latency_ms"], d["p95_latency_ms"] = percentiles(values, (50, 95))
    return d


def percentiles(ordered: Sequence[float], ps: Sequence[int]) -> list[float | None]:
    """Nearest-rank percentiles of sorted values (None when there are none)."""
    if not ordered:
        return [None for _ in ps]
    return [ordered[max(1, -(-p * len(ordered) // 100)) - 1] for p in ps]


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Order groups by their keys, None first, without comparing None to strings."""
    return tuple((v is not None, v if v is not None else "") for v in key)
