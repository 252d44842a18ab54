"""``GET /dashboard`` (admin key) and the HTML shared with ``unillm report``.

`render` turns `analytics.build` output (plus budget status) into one
self-contained HTML page: inline CSS, server-side SVG charts (`svg`), no
script, no external request. Filters are a plain GET form (date range, tag).

Login: ``/dashboard?key=ADMIN_KEY`` once. The gateway checks the key, opens a
server-side session (`Sessions`: a random 256-bit id, kept in this process's
memory for ``[server] session_seconds``) and redirects to the same page without
the key; the browser keeps only the id, in a cookie that is HttpOnly,
SameSite=Strict, scoped to ``/dashboard`` and ``Secure`` when the request came
over https (as uvicorn sees it: TLS, or ``X-Forwarded-Proto`` from an address in
its ``forwarded_allow_ips``). Revoking the key ends its sessions at the next
request. ``?logout=1`` ends the session. The page may not be framed
(``frame-ancestors 'none'``, ``X-Frame-Options: DENY``). ``/dashboard/budgets`` and
``/dashboard/rules`` (`dashboard_pages`) show the admin API's budgets and rules, under the
same login, headers and CSP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from . import svg
from .analytics import budget_status, build, filters_from, parse_range
from .sessions import SESSION_COOKIE
from .svg import usd

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

CSS = """
:root{--ink:#1f2430;--muted:#6b7280;--line:#e8eaef;--bg:#f6f7f9;--accent:#3b5bdb;--good:#0ca678}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 Inter,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-variant-numeric:tabular-nums}
main{max-width:1240px;margin:0 auto;padding:28px 32px 48px}
header{display:flex;align-items:flex-end;justify-content:space-between;gap:24px;margin-bottom:22px;flex-wrap:wrap}
h1{font-size:22px;margin:0;font-weight:650;letter-spacing:-.01em}h1 span{color:var(--accent)}
.sub{color:var(--muted);font-size:13px;margin-top:4px}
form{display:flex;gap:8px;align-items:flex-end;flex-wrap:wrap}
label{display:flex;flex-direction:column;font-size:11px;color:var(--muted);gap:3px;text-transform:uppercase;letter-spacing:.04em}
input{font:inherit;font-size:13px;padding:6px 9px;border:1px solid #d5d9e0;border-radius:7px;width:130px;background:#fff;color:var(--ink)}
button{font:inherit;font-size:13px;padding:7px 14px;border:0;border-radius:7px;background:var(--accent);color:#fff;cursor:pointer}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-bottom:14px}
.kpi,.card{background:#fff;border:1px solid var(--line);border-radius:12px}
.kpi{padding:14px 16px}.kpi .v{font-size:21px;font-weight:650;margin-top:4px;letter-spacing:-.01em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.kpi .k,.card h2{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em;font-weight:600;margin:0}
.kpi .n{font-size:12px;color:var(--muted);margin-top:2px}.kpi .v.good{color:var(--good)}
.card{padding:16px 18px;margin-bottom:14px}.card h2{margin-bottom:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}.grid .card{margin-bottom:0}.row{margin-bottom:14px}
.grid3{display:grid;grid-template-columns:1fr 1fr 1.5fr;gap:14px;margin-bottom:14px;align-items:start}.grid3 .card{margin-bottom:0}
.cache{display:flex;gap:18px;align-items:center}.cache .big{font-size:20px;font-weight:650;color:var(--good)}
table{width:100%;border-collapse:collapse;font-size:12.5px}
th{text-align:left;font-weight:600;color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em;padding:6px 8px;border-bottom:1px solid var(--line)}
td{padding:7px 8px;border-bottom:1px solid #f1f2f5;white-space:nowrap}td.num,th.num{text-align:right}
tr:last-child td{border-bottom:0}.pill{display:inline-block;padding:1px 8px;border-radius:99px;font-size:11px;background:#eef2ff;color:#364fc7}
.pill.error,.pill.budget_denied,.pill.rule_denied{background:#fff0f0;color:#c92a2a}.pill.cache_hit{background:#e6fcf5;color:#087f5b}
.budget{margin-bottom:12px}.budget .t{display:flex;justify-content:space-between;gap:10px;font-size:12.5px;margin-bottom:4px}
.budget .t>span:first-child{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.budget .t>span:last-child{white-space:nowrap}
.d1{padding-left:22px}.d2{padding-left:38px}.d3{padding-left:54px}.d4{padding-left:70px}
.muted{color:var(--muted)}footer{color:var(--muted);font-size:12px;margin-top:18px}
nav{display:flex;gap:16px;margin-bottom:14px;font-size:13px}nav a{color:var(--muted);text-decoration:none}
nav a.on{color:var(--accent);font-weight:600}td.wrap{white-space:normal}.pill.http{background:#fff4e6;color:#d9480f}
"""


def _kpi(label: str, value: str, note: str = "", cls: str = "") -> str:
    return (f"<div class='kpi'><div class='k'>{escape(label)}</div>"
            f"<div class='v {cls}' title='{escape(value, True)}'>{escape(value)}</div>"
            f"<div class='n'>{escape(note)}</div></div>")


def _bars(rows: list[tuple[str, Decimal, str]], label: str, empty: str = "Nothing in this range.",
          width: int = 545) -> str:
    """Bars drawn at the card's own width (a narrow card would otherwise shrink the text)."""
    return svg.bar_list(rows, label=label, width=width) if rows else f"<p class='muted'>{escape(empty)}</p>"


def _card(title: str, body: str, cls: str = "card") -> str:
    return f"<section class='{cls}'><h2>{escape(title)}</h2>{body}</section>"


def _int(n: int | None) -> str:
    return f"{n or 0:,}"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def _rows(rows: Sequence[Mapping[str, Any]], name: Any) -> list[tuple[str, Decimal, str]]:
    return [(name(r), r["cost_usd"], _calls(r["calls"])) for r in rows]


def _calls(n: int) -> str:
    return f"{n:,} call" + ("" if n == 1 else "s")


def _when(v: Any) -> str:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(v or "")


def _calls_table(calls: Sequence[Mapping[str, Any]]) -> str:
    if not calls:
        return "<p class='muted'>No calls in this range.</p>"
    head = ("<tr><th>Time (UTC)</th><th>Model</th><th>User</th><th>Project</th><th>Status</th>"
            "<th class='num'>Tokens</th><th class='num'>Latency</th><th class='num'>Cost</th></tr>")
    body = []
    for c in calls:
        body.append(
            f"<tr class='call'><td>{escape(_when(c['started_at']))}</td>"
            f"<td>{escape(c['provider'])}/{escape(c['model'])}</td>"
            f"<td>{escape(c['user'] or '—')}</td><td>{escape(c['project'] or '—')}</td>"
            f"<td><span class='pill {escape(c['status'])}'>{escape(c['status'])}</span></td>"
            f"<td class='num'>{_int(c['tokens'])}</td><td class='num'>{_ms(c['latency_ms'])}</td>"
            f"<td class='num'>{escape(usd(c['cost_usd']))}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _sections(rows: Sequence[Mapping[str, Any]]) -> str:
    """The section tree: each row indented by its depth, its cost including its subsections."""
    head = "<tr><th>Section</th><th class='num'>Calls</th><th class='num'>Tokens</th><th class='num'>Cost</th></tr>"
    body = []
    for r in rows:
        path = str(r["section"])
        depth = min(path.count("/"), 4)
        name = path.rsplit("/", 1)[-1]
        body.append(f"<tr class='section'><td class='d{depth}' title='{escape(path, True)}'>{escape(name)}</td>"
                    f"<td class='num'>{_int(r['calls'])}</td><td class='num'>{_int(r['tokens'])}</td>"
                    f"<td class='num'>{escape(usd(r['cost_usd']))}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _budgets(rows: Sequence[Mapping[str, Any]], most: int = 12) -> str:
    """A gauge per money budget and scope (the fullest ``most``): spent of limit, coloured by how full."""
    money = [b for b in rows if b.get("limit_usd") is not None]
    money.sort(key=lambda b: -(Decimal(b.get("spent_usd") or 0) / Decimal(b["limit_usd"])
                               if Decimal(b["limit_usd"]) else Decimal(0)))
    out = [_budget(b) for b in money[:most]]
    if len(money) > most:
        out.append(f"<p class='muted'>{len(money) - most:,} more (least used) not shown: "
                   "<code>unillm budgets status</code> lists them all.</p>")
    return "".join(out) or "<p class='muted'>No money budgets configured.</p>"


def _scope_text(scope: Mapping[str, Any]) -> str:
    """``ann`` for a one-key scope, ``project=bot, user=ann`` for more; "" when global."""
    if len(scope) == 1:
        return str(next(iter(scope.values())))
    return ", ".join(f"{k}={v}" for k, v in scope.items())


def _budget(b: Mapping[str, Any]) -> str:
    limit, spent = Decimal(b["limit_usd"]), Decimal(b.get("spent_usd") or 0)
    name = str(b.get("budget") or b.get("name"))
    scope = dict(b.get("scope") or {})
    value = _scope_text(scope)
    if name.rpartition(":")[2] == value:
        value = ""  # a key's budget is named after its scope ("key:ID")
    label = " · ".join(x for x in (value, str(b.get("period") or "")) if x)
    title = ", ".join(f"{k}={v}" for k, v in scope.items()) or "global"
    pct = f"{spent / limit * 100:.0f}%" if limit else "—"
    return (f"<div class='budget'><div class='t'><span class='label' title='{escape(title, True)}'>"
            f"{escape(name)} <span class='muted'>· {escape(label)}</span></span>"
            f"<span class='value'><b>{escape(usd(spent))}</b> <span class='muted'>of {escape(usd(limit))} "
            f"· {pct}</span></span></div>{svg.gauge(spent, limit, label=f'{name} {label}')}</div>")


def _form(query: Mapping[str, str]) -> str:
    def field(name: str, label: str, placeholder: str) -> str:
        return (f"<label>{label}<input name='{name}' value='{escape(query.get(name, ''), True)}' "
                f"placeholder='{placeholder}'></label>")
    return (f"<form method='get' action='/dashboard'>{field('since', 'Since', '30d')}"
            f"{field('until', 'Until', 'now')}{field('where', 'Tag filter', 'project=bot')}"
            "<button type='submit'>Apply</button></form>")


def render(data: Mapping[str, Any], budgets: Sequence[Mapping[str, Any]], *, title: str = "unillm",
           query: Mapping[str, str] | None = None, form: bool = True) -> str:
    """The whole page as one HTML string."""
    t, rng = data["totals"], data["range"]
    saved = data["cache"]["saved_usd"] + data["rules"]["saved_usd"]
    avg = t["cost_usd"] / t["calls"] if t["calls"] else Decimal(0)
    span = f"{_when(rng['since'])[:10] or 'the beginning'} → {_when(rng['until'])[:10] or 'now'}"
    filt = ", ".join(f"{k}={v}" for k, v in data.get("filters", {}).items())
    kpis = "".join([
        _kpi("Total spend", usd(t["cost_usd"]), _calls(t["calls"])),
        _kpi("Avg per call", usd(avg.quantize(Decimal("0.000001")) if avg else avg), "rounded to µ$"),
        _kpi("Tokens", _int(t["tokens"]), "prompt + completion"),
        _kpi("Cache hit rate", f"{float(data['cache']['hit_rate']) * 100:.1f}%",
             f"{data['cache']['hits']:,} hit" + ("" if data['cache']['hits'] == 1 else "s")),
        _kpi("Money saved", usd(saved), "cache + rules", "good"),
        _kpi("Latency p50 / p95", f"{_ms(t['p50_latency_ms'])}", f"p95 {_ms(t['p95_latency_ms'])}"),
    ])
    series = svg.time_chart([(p["t"], p["cost_usd"]) for p in data["series"]], label="spend over time")
    cache = (f"<div class='cache'>{svg.ring(data['cache']['hit_rate'], label='cache hit rate', caption='hit rate')}"
             f"<div><div class='muted'>saved by the cache</div><div class='big'>{escape(usd(data['cache']['saved_usd']))}</div>"
             f"<div class='muted' style='margin-top:8px'>saved by rules</div>"
             f"<div class='big'>{escape(usd(data['rules']['saved_usd']))}</div></div></div>")
    rules = _bars([(r["rule"], r["saved_usd"], _calls(r["calls"])) for r in data["rules"]["by_rule"]],
                  "savings by rule", "No rule has fired in this range.", width=300)
    body = "".join([
        nav("spend") if form else "",
        (f"<header><div><h1><span>unillm</span> · {escape(title)}</h1><div class='sub'>{escape(span)}"
         f"{' · ' + escape(filt) if filt else ''}</div></div>"
         f"{_form(query or {}) if form else ''}</header>"),
        f"<div class='kpis'>{kpis}</div>",
        _card(f"Spend over time, per {rng['bucket']}", series),
        "<div class='grid row'>",
        _card("By model", _bars(_rows(data["by_model"], lambda r: f"{r['provider']}/{r['model']}"), "spend by model")),
        _card("By provider", _bars(_rows(data["by_provider"], lambda r: r["provider"]), "spend by provider")),
        "</div><div class='grid row'>",
        _card("By user", _bars(_rows(data["by_user"], lambda r: r["user"] or "(no user)"), "spend by user")),
        _card("By project", _bars(_rows(data["by_project"], lambda r: r["project"] or "(no project)"),
                                      "spend by project")),
        "</div><div class='grid3'>",
        _card("Cache", cache), _card("Rule savings", rules), _card("Budgets", _budgets(budgets)),
        "</div>",
        _card("By section", _sections(data.get("by_section") or [])) if data.get("by_section") else "",
        _card("Most expensive requests", _calls_table(data["top_requests"])),
        _card("Recent calls", _calls_table(data["recent"])),
        (f"<footer>Generated {escape(_when(datetime.now(timezone.utc)))} UTC by unillm · amounts are "
         "exact USD from the ledger</footer>"),
    ])
    return document(title, body)


#: the gateway's dashboard pages, in the order the header links them
PAGES = (("spend", "/dashboard", "Spend"), ("budgets", "/dashboard/budgets", "Budgets"),
         ("rules", "/dashboard/rules", "Rules"))


def nav(current: str) -> str:
    """Links between the dashboard's pages (plain links: no script)."""
    links = "".join(f"<a href='{href}'{' class=on' if name == current else ''}>{label}</a>"
                    for name, href, label in PAGES)
    return f"<nav>{links}</nav>"


def document(title: str, body: str) -> str:
    """The whole HTML page around ``body`` (already escaped): inline CSS, no script."""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>unillm · {escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>")


def page(client: Any, *, since: str | None, until: str | None, where: Mapping[str, Any],
         title: str, query: Mapping[str, str] | None = None, form: bool = True) -> str:
    """Build the analytics and render them (blocking)."""
    start, end = parse_range(since, until)
    data = _focus(client, build(client, start, end, where), end, where)
    budgets = budget_status(client)
    return render(data, budgets, title=title, query=query, form=form)


#: every dashboard page: no framing, no script, nothing fetched from elsewhere
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _focus(client: Any, data: dict[str, Any], end: datetime | None, where: Mapping[str, Any]) -> dict[str, Any]:
    """The time chart starts at the first bucket with calls, not at an empty range start;
    two days or less of data are drawn per hour (not as one bar at the edge of a month)."""
    series = data["series"]
    first = next((i for i, p in enumerate(series) if p["calls"]), None)
    if first is None:
        return {**data, "series": []}  # "No calls in this range", not a month of empty columns
    if data["range"]["bucket"] == "day" and len(series) - first <= 2:
        day = datetime.fromisoformat(series[first]["t"][:10]).replace(tzinfo=timezone.utc)
        hourly = build(client, day, end, where, bucket="hour", top=0, recent=0)
        series = hourly["series"]
        first = next((i for i, p in enumerate(series) if p["calls"]), 0)
        data = {**data, "range": {**data["range"], "bucket": "hour"}}
    return {**data, "series": series[first:]}


def login(request: Request) -> Response | None:
    """``?key=ADMIN_KEY`` opens a session and redirects to the same page without the key;
    ``?logout=1`` ends it. None: neither was asked (the caller authenticates the cookie)."""
    from starlette.responses import RedirectResponse
    gw = request.app.state.gateway
    q = request.query_params
    if not (q.get("key") or q.get("logout")):
        return None
    rest = [(k, v) for k, v in q.multi_items() if k not in ("key", "logout")]
    from urllib.parse import urlencode
    resp: Response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), 303,
                                      headers=SECURITY_HEADERS)
    if q.get("logout"):
        gw.sessions.end(request.cookies.get(SESSION_COOKIE))
        resp.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return resp
    key = gw.verify(q["key"], admin=True)
    resp.set_cookie(SESSION_COOKIE, gw.sessions.start(key.id), max_age=int(gw.sessions.ttl),
                    httponly=True, samesite="strict", path="/dashboard",
                    secure=request.url.scheme == "https")
    return resp


async def endpoint(request: Request) -> Response:
    from starlette.responses import HTMLResponse
    gw = request.app.state.gateway
    q = request.query_params
    redirect = login(request)
    if redirect is not None:
        return redirect
    gw.authenticate(request, admin=True, browser=True)
    where = filters_from(q, [w for w in q.getlist("where") if w])
    html = await asyncio.to_thread(page, gw.client, since=q.get("since") or None,
                                   until=q.get("until") or None, where=where, title="spend",
                                   query={k: q.get(k, "") for k in ("since", "until", "where")})
    return HTMLResponse(html, headers=SECURITY_HEADERS)
