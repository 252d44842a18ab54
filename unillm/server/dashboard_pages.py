"""The dashboard's budget and rule pages (``/dashboard/budgets``, ``/dashboard/rules``).

Server-rendered from the data ``GET /admin/budgets`` and ``GET /admin/rules`` answer
(`admin.budget_views`, `admin.rule_views`): the same page shell as the spend page
(`dashboard.document`), no script, nothing fetched from elsewhere. Every string that a
tenant or an admin typed (budget and rule names, scope values such as a key's user, rule
keywords and regexes) is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from . import svg
from .dashboard import SECURITY_HEADERS, _card, _int, document, login, nav
from .svg import usd

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .app import Gateway

DASH = "—"


def _header(title: str, sub: str) -> str:
    return (f"{nav(title.lower())}<header><div><h1><span>unillm</span> · {escape(title)}</h1>"
            f"<div class='sub'>{escape(sub)}</div></div></header>")


def _table(head: Sequence[tuple[str, bool]], rows: Sequence[str], cls: str) -> str:
    """A table of already-escaped ``rows``; ``head`` is (label, numeric) per column."""
    th = "".join(f"<th{' class=num' if num else ''}>{escape(label)}</th>" for label, num in head)
    return f"<table class='{cls}'><tr>{th}</tr>{''.join(rows)}</table>"


def _td(text: str, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    return f"<td{f' class={chr(39)}{classes}{chr(39)}' if classes else ''}>{escape(text)}</td>"


def _money(v: Any) -> str:
    return DASH if v is None else usd(Decimal(str(v)))


def _when(v: Any) -> str:
    if not v:
        return DASH
    text = str(v)
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return text


def _scope(scope: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "global"


def _period(spec: Mapping[str, Any], st: Mapping[str, Any]) -> str:
    """``daily (2026-12-02)``: the budget's period and the window the status is for."""
    name, window = str(spec.get("period") or "monthly"), st.get("period")
    return f"{name} ({window})" if window and window != name else name


def _limits(spec: Mapping[str, Any]) -> str:
    parts = []
    if spec.get("limit_usd") is not None:
        parts.append(_money(spec["limit_usd"]))
    if spec.get("limit_tokens") is not None:
        parts.append(f"{_int(spec['limit_tokens'])} tokens")
    if spec.get("limit_requests") is not None:
        parts.append(f"{_int(spec['limit_requests'])} requests")
    return " · ".join(parts) or DASH


def _alerts(spec: Mapping[str, Any]) -> str:
    return ", ".join(f"{(Decimal(str(a)) * 100).normalize():f}%" for a in spec.get("alert_at") or ()) or DASH


BUDGET_HEAD = [("Budget", False), ("Source", False), ("Scope", False), ("Period", False), ("Limit", False),
               ("Spent", True), ("Held", True), ("Remaining", True), ("Tokens", True), ("Requests", True),
               ("Resets at", False), ("Alerts at", False), ("On exceed", False), ("Used", False)]


def _budget_rows(view: Mapping[str, Any]) -> list[str]:
    spec, source = view["spec"], str(view["source"])
    rows = view["status"] or [{"scope": spec.get("scope") or {}, "period": spec.get("period")}]
    out = []
    for st in rows:
        used = st.get("used")
        gauge = ""
        if spec.get("limit_usd") is not None and st.get("spent_usd") is not None:
            gauge = svg.gauge(Decimal(str(st["spent_usd"])), Decimal(str(spec["limit_usd"])), width=110,
                              label=f"{view['name']} {_scope(st['scope'])}")
        out.append(
            "<tr class='budget-row'>" + _td(str(view["name"]), cls="name")
            + f"<td><span class='pill {escape(source, True)}'>{escape(source)}</span></td>"
            + _td(_scope(st.get("scope") or {}), cls="scope") + _td(_period(spec, st))
            + _td(_limits(spec)) + _td(_money(st.get("spent_usd")), True, "spent")
            + _td(_money(st.get("held_usd")), True, "held") + _td(_money(st.get("remaining_usd")), True, "remaining")
            + _td(_int(st.get("tokens")), True) + _td(_int(st.get("requests")), True)
            + _td(_when(st.get("resets_at")), cls="resets") + _td(_alerts(spec), cls="alerts")
            + _td(str(spec.get("on_exceed") or "raise"))
            + f"<td class='used' title='{escape(f'{used:.0%}' if used is not None else DASH, True)}'>"
              f"{gauge or escape(f'{used:.0%}' if used is not None else DASH)}</td></tr>")
    return out


def budgets_page(views: Sequence[Mapping[str, Any]]) -> str:
    """Every budget and scope: limits, spent, held, remaining, when it resets, its alerts."""
    rows = [r for v in views for r in _budget_rows(v)]
    body = (_table(BUDGET_HEAD, rows, "budgets") if rows else
            "<p class='muted'>No budgets. Add <code>[[budgets]]</code> to unillm.toml or "
            "<code>POST /admin/budgets</code>.</p>")
    sub = (f"{len(views):,} budget{'' if len(views) == 1 else 's'} · spent and held as of now · "
           "source: file (unillm.toml), http (/admin/budgets) or key (/admin/keys)")
    return document("budgets", _header("Budgets", sub) + _card("Budgets", body))


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    return str(value).lower() if isinstance(value, bool) else str(value)


def _lines(items: Mapping[str, Any], empty: str) -> str:
    if not items:
        return f"<span class='muted'>{escape(empty)}</span>"
    return "<br>".join(f"<code>{escape(str(k))}</code> = {escape(_show(v))}" for k, v in items.items())


RULE_HEAD = [("#", True), ("Rule", False), ("Source", False), ("Mode", False), ("Conditions", False),
             ("Action", False), ("Applications", True), ("Cost", True), ("Saved", True)]
ACTIONS = ("use", "max_tokens", "set", "deny", "cache_ttl")


def _rule_row(i: int, view: Mapping[str, Any]) -> str:
    spec, metrics, source = view["spec"], view["metrics"], str(view["source"])
    actions = {k: spec[k] for k in ACTIONS if spec.get(k) not in (None, {}, [])}
    mode = str(spec.get("mode", "apply")) + (f" · priority {spec['priority']}" if spec.get("priority") is not None
                                            else "")
    return ("<tr class='rule-row'>" + _td(str(i), True) + _td(str(view["name"]), cls="name")
            + f"<td><span class='pill {escape(source, True)}'>{escape(source)}</span></td>" + _td(mode)
            + f"<td class='wrap conditions'>{_lines(spec.get('when') or {}, 'every call')}</td>"
            + f"<td class='wrap action'>{_lines(actions, 'none')}</td>"
            + _td(_int(metrics.get("applications")), True, "applications")
            + _td(_money(metrics.get("cost_usd")), True) + _td(_money(metrics.get("saved_usd")), True, "saved")
            + "</tr>")


def rules_page(views: Sequence[Mapping[str, Any]]) -> str:
    """Every rule in evaluation order: conditions, action, applications and savings (ledger)."""
    rows = [_rule_row(i, v) for i, v in enumerate(views, 1)]
    body = (_table(RULE_HEAD, rows, "rules") if rows else
            "<p class='muted'>No rules. Add <code>[[rules]]</code> to unillm.toml or "
            "<code>POST /admin/rules</code>.</p>")
    saved = sum((Decimal(str(v["metrics"].get("saved_usd") or 0)) for v in views), Decimal(0))
    sub = (f"{len(views):,} rule{'' if len(views) == 1 else 's'}, in evaluation order · {usd(saved)} saved "
           "(every call in the ledger) · POST /admin/rules/test explains a request")
    return document("rules", _header("Rules", sub) + _card("Rules", body))


def render(gw: Gateway, page: str) -> str | None:
    """The HTML of dashboard ``page`` (blocking: reads the ledger); None for an unknown page."""
    from .admin import budget_views, managed, rule_views
    if page == "budgets":
        return budgets_page(budget_views(managed(gw)))
    if page == "rules":
        return rules_page(rule_views(gw))
    return None


async def endpoint(request: Request) -> Response:
    """``GET /dashboard/{page}``: the same login, session cookie and headers as ``/dashboard``."""
    import asyncio

    from starlette.responses import HTMLResponse

    from .wire import HTTPError
    redirect = login(request)
    if redirect is not None:
        return redirect
    gw = request.app.state.gateway
    gw.authenticate(request, admin=True, browser=True)
    name = request.path_params["page"]
    html = await asyncio.to_thread(render, gw, name)
    if html is None:
        raise HTTPError(404, f"no dashboard page {name!r} (budgets, rules)", code="not_found")
    return HTMLResponse(html, headers=SECURITY_HEADERS)
