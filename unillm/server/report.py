"""``unillm report``: the dashboard as one self-contained HTML file (inline CSS and SVG, no script)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .dashboard import page


def render_report(client: Any, *, since: str | None = "30d", until: str | None = None,
                  where: Mapping[str, Any] | None = None, title: str = "spend report") -> str:
    """The report's HTML for ``client``'s ledger (budgets included when there are any)."""
    return page(client, since=since, until=until, where=dict(where or {}),
                title=title, form=False)


def write_report(client: Any, path: str | Path, **options: Any) -> Path:
    """Write the report to ``path``; returns it."""
    out = Path(path)
    out.write_text(render_report(client, **options), encoding="utf-8")
    return out
