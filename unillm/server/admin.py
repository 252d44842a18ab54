"""The gateway's admin API: budgets, rules, the audit log and health, managed while it runs.

Routes (every one needs an admin key)::

    GET  /admin/audit                       newest first; ?limit (1-1000, default 100), ?after, ?before
    GET|POST /admin/budgets                 GET|PATCH|DELETE /admin/budgets/{name}
    GET|POST /admin/rules                   PATCH|DELETE /admin/rules/{name}
    POST /admin/rules/test                  a chat request in, `Client.explain` + cost estimate out
                                            (`unillm.server.rule_test`)
    GET  /admin/health                      ledger/cache latency, RSS, error rate, p50/p95
    POST /admin/reload (and SIGHUP)         re-read unillm.toml's rules and budgets

Budgets and rules created over HTTP live in the ledger's database (``unillm_admin_objects``),
each as the JSON it was validated from, with the same typed models as ``unillm.toml``
(`BudgetSpec`, `Rule`), so a mistake gets the file's message. Every gateway process re-reads
them at most every `REFRESH_SECONDS` before admitting a call (and at once after its own
change), so every worker and host applies a change within that delay. What ``unillm.toml``
defines stays its own: changing a file-defined budget or rule over HTTP is refused (409).
Each change is one audit row (`unillm.server.audit`), written in the change's transaction.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from . import audit
from .wire import HTTPError, json_response

if TYPE_CHECKING:
    from .app import Gateway

OBJECTS = "unillm_admin_objects"
#: how stale a process's copy of the HTTP-managed budgets and rules may be, in seconds
REFRESH_SECONDS = 2.0
KEY_BUDGET_PREFIX = "key:"


class Managed:
    """This process's view of the HTTP-managed budgets and rules, layered over the file's."""

    def __init__(self, gw: Gateway, *, interval: float = REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.gw, self.client = gw, gw.client
        settings = self.client.settings
        self.file_budgets = frozenset(b.name for b in settings.budgets)
        self.file_rules: list[Any] = list(settings.rules)
        self.interval, self._monotonic = interval, monotonic
        self._due = 0.0
        self._seen: tuple[Any, ...] | None = None
        self._http_budgets: set[str] = set()
        self.http_rules: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        return self.client.ledger.store

    def due(self) -> bool:
        return self._monotonic() >= self._due

    def refresh(self) -> None:
        """Re-read the HTTP-managed objects and apply what changed (no-op when nothing did)."""
        with self.store.transaction() as tx:
            found = tuple(tuple(r) for r in tx.execute(
                f"SELECT kind, name, spec FROM {OBJECTS} ORDER BY kind, name").fetchall())
        with self._lock:
            self._due = self._monotonic() + self.interval
            if found == self._seen:
                return
            budgets = _valid(found, "budget", _budget)
            rules = _valid(found, "rule", _rule)
            self._apply_budgets([b for b in budgets if b.name not in self.file_budgets])
            file_names = {r.name for r in self.file_rules}
            self._apply_rules([r for r in rules if r.name not in file_names])
            self._seen = found

    def _apply_budgets(self, specs: list[Any]) -> None:
        budgets = self.client.budgets
        kept = [s for s in budgets.specs if s.name not in self._http_budgets]
        budgets.specs = kept + specs  # one assignment: a call admitted meanwhile sees old or new
        self._http_budgets = {s.name for s in specs}

    def _apply_rules(self, rules: list[Any]) -> None:
        from ..rules import RuleSet
        every = self.file_rules + rules
        self.client.rules = RuleSet(every, timezone=self.client.settings.timezone) if every else None
        self.http_rules = frozenset(r.name for r in rules)

    def source_of_budget(self, name: str) -> str:
        if name in self.file_budgets:
            return "file"
        return "key" if name.startswith(KEY_BUDGET_PREFIX) else "http"


def _valid(found: tuple[Any, ...], kind: str, parse: Callable[..., Any]) -> list[Any]:
    """The stored objects of ``kind`` that validate; one this version refuses (written by
    another) is logged and left out, never a failure of every call."""
    import logging
    out = []
    for k, name, spec in found:
        if k != kind:
            continue
        try:
            out.append(parse(json.loads(spec), source=f"{OBJECTS} ({kind} {name!r})"))
        except (errors.ConfigError, ValueError) as exc:
            logging.getLogger("unillm.server").error("ignored: %s", exc)
    return out


def managed(gw: Gateway) -> Managed:
    """The gateway's `Managed` (made on first use)."""
    m: Managed | None = getattr(gw, "_managed", None)
    if m is None:
        m = Managed(gw)
        gw._managed = m
    return m


async def refresh(gw: Gateway) -> None:
    """Before admission: re-read HTTP-managed budgets and rules when `REFRESH_SECONDS` passed."""
    m = managed(gw)
    if m.due():
        await asyncio.to_thread(m.refresh)


# ── validation: the file's typed models, the file's messages ──────────────────

def _budget(data: Any, name: str | None = None, source: str = "unillm_admin_objects") -> Any:
    from ..budgets.spec import parse_budgets
    (spec,) = parse_budgets([data], source=source)
    return spec


def _rule(data: Any, name: str | None = None, source: str = "unillm_admin_objects") -> Any:
    from ..rules.spec import parse_rule
    return parse_rule(data, index=None, source=source)


def _invalid(exc: errors.ConfigError, what: str) -> HTTPError:
    return HTTPError(400, str(exc), code=f"invalid_{what}", param=exc.key)


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


# ── storage ──────────────────────────────────────────────────────────────────

def _locked(tx: Any, kind: str, name: str) -> dict[str, Any] | None:
    """The stored JSON of the ``kind`` object ``name``, its row locked until ``tx`` ends (None
    when there is none): what an update or a delete starts from."""
    row = tx.execute(f"SELECT spec FROM {OBJECTS} WHERE kind = ? AND name = ?{tx.dialect.for_update}",
                     (kind, name)).fetchone()
    return None if row is None else json.loads(row[0])


def _insert(store: Any, actor: str, kind: str, name: str, data: dict[str, Any]) -> bool:
    now = datetime.now(timezone.utc)
    with store.transaction() as tx:
        cur = tx.execute(f"INSERT INTO {OBJECTS} (kind, name, spec, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (kind, name, json.dumps(data), now.isoformat()))
        if cur.rowcount != 1:
            return False
        audit.write(tx, actor, f"{kind}s.create", f"{kind}:{name}", None, data, now)
    return True


def _update(store: Any, actor: str, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
            ) -> dict[str, Any] | None:
    """Apply ``change`` to the stored object under the write lock; None when it is gone."""
    now = datetime.now(timezone.utc)
    with store.transaction() as tx:
        before = _locked(tx, kind, name)
        if before is None:
            return None
        after = change(dict(before))
        tx.execute(f"UPDATE {OBJECTS} SET spec = ?, updated_at = ? WHERE kind = ? AND name = ?",
                   (json.dumps(after), now.isoformat(), kind, name))
        audit.write(tx, actor, f"{kind}s.update", f"{kind}:{name}", before, after, now)
    return after


def _delete(store: Any, actor: str, kind: str, name: str) -> bool:
    now = datetime.now(timezone.utc)
    with store.transaction() as tx:
        before = _locked(tx, kind, name)
        if before is None:
            return False
        tx.execute(f"DELETE FROM {OBJECTS} WHERE kind = ? AND name = ?", (kind, name))
        audit.write(tx, actor, f"{kind}s.delete", f"{kind}:{name}", before, None, now)
    return True


async def _admin(request: Request) -> tuple[Gateway, Any, Managed]:
    gw: Gateway = request.app.state.gateway
    key = gw.authenticate(request, admin=True)
    return gw, key, managed(gw)


async def _json(request: Request) -> dict[str, Any]:
    from .chat import read_json
    return _body_object(await read_json(request))


# ── audit ────────────────────────────────────────────────────────────────────

def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be a whole number, got {raw!r}", param=name) from None
    if value < 0:
        raise HTTPError(400, f"{name} must be >= 0, got {value}", param=name)
    return value


async def audit_log(request: Request) -> Response:
    """``GET /admin/audit``: admin changes, newest first."""
    gw, _, _ = await _admin(request)
    limit = _int_param(request, "limit", 100) or 100
    if limit > audit.MAX_LIMIT:
        raise HTTPError(400, f"limit must be at most {audit.MAX_LIMIT}, got {limit}", param="limit")
    after, before = _int_param(request, "after", None), _int_param(request, "before", None)
    found = await asyncio.to_thread(audit.rows, gw.client.ledger.store, limit=limit, after=after, before=before)
    return json_response({"object": "list", "data": [r.public() for r in found]})


# ── budgets and rules: one list / create / change / delete for both ──────────

@dataclass(frozen=True)
class Kind:
    """What the generic handlers need to know about one kind of HTTP-managed object."""
    name: str                                           #: "budget" or "rule" (the table's kind)
    check: Callable[[Gateway, dict[str, Any], str], Any]  #: validate as the file would (ConfigError)
    owned: Callable[[Managed, str], None]               #: raise 409 unless the admin API manages it
    view: Callable[[Gateway, Managed, Any], dict[str, Any]]  #: the answer for one (blocking: a thread)
    views: Callable[[Gateway, Managed], list[dict[str, Any]]]  #: every one, for GET (blocking: a thread)


def _missing(kind: Kind, name: str) -> HTTPError:
    return HTTPError(404, f"no {kind.name} {name!r} created over HTTP", code=f"{kind.name}_not_found")


def _fresh_view(kind: Kind, gw: Gateway, m: Managed, obj: Any) -> dict[str, Any]:
    m.refresh()  # this process applies its own change at once
    return kind.view(gw, m, obj)


async def _list_or_create(request: Request, kind: Kind) -> Response:
    """``GET /admin/{kind}s`` lists every one (`Kind.views`); ``POST`` creates one (201)."""
    if request.method == "POST":
        return await _create(request, kind)
    gw, _, m = await _admin(request)
    return json_response({"object": "list", "data": await asyncio.to_thread(kind.views, gw, m)})


async def _create(request: Request, kind: Kind) -> Response:
    """``POST /admin/{kind}s``: validate, refuse a file-defined name, store (201)."""
    gw, key, m = await _admin(request)
    body = await _json(request)
    try:
        obj = kind.check(gw, body, f"POST /admin/{kind.name}s")
    except errors.ConfigError as exc:
        raise _invalid(exc, kind.name) from None
    kind.owned(m, obj.name)
    if not await asyncio.to_thread(_insert, m.store, key.id, kind.name, obj.name, body):
        raise HTTPError(409, f"a {kind.name} named {obj.name!r} exists: PATCH /admin/{kind.name}s/{obj.name} "
                        "changes it", code=f"{kind.name}_exists")
    return json_response(await asyncio.to_thread(_fresh_view, kind, gw, m, obj), 201)


async def _change(request: Request, kind: Kind) -> Response:
    """``PATCH`` (fields merged, re-validated under the row's lock) or ``DELETE`` one object
    created over HTTP."""
    gw, key, m = await _admin(request)
    name = request.path_params["name"]
    kind.owned(m, name)
    if request.method == "DELETE":
        if not await asyncio.to_thread(_delete, m.store, key.id, kind.name, name):
            raise _missing(kind, name)
        await asyncio.to_thread(m.refresh)
        return json_response({"name": name, "deleted": True})
    patch = await _json(request)
    if patch.get("name", name) != name:
        raise HTTPError(400, f"a {kind.name} cannot be renamed: DELETE it and POST a new one", param="name")
    checked: list[Any] = []

    def change(before: dict[str, Any]) -> dict[str, Any]:
        after = {**before, **patch}
        checked.append(kind.check(gw, after, f"PATCH /admin/{kind.name}s/{name}"))  # ConfigError: no write
        return after
    try:
        after = await asyncio.to_thread(_update, m.store, key.id, kind.name, name, change)
    except errors.ConfigError as exc:
        raise _invalid(exc, kind.name) from None
    if after is None:
        raise _missing(kind, name)
    return json_response(await asyncio.to_thread(_fresh_view, kind, gw, m, checked[-1]))


# ── budgets ──────────────────────────────────────────────────────────────────

def _budget_view(m: Managed, spec: Any, status: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [{**row, "held_usd": row["reserved_usd"]} for row in status if row["budget"] == spec.name]
    return {"name": spec.name, "source": m.source_of_budget(spec.name), "spec": spec.model_dump(mode="json"),
            "status": rows}


def _budgets_now(m: Managed) -> tuple[list[Any], list[dict[str, Any]]]:
    m.refresh()
    return list(m.client.budgets.specs), m.client.budgets.status()


def _owned_budget(m: Managed, name: str) -> None:
    """409 unless the budget ``name`` is one the admin API manages."""
    source = m.source_of_budget(name)
    if source == "file":
        raise HTTPError(409, f"the budget {name!r} is defined in unillm.toml: change it there "
                        "(then POST /admin/reload or restart)", code="defined_in_file")
    if source == "key":
        raise HTTPError(409, f"the budget {name!r} belongs to a gateway key: change the key "
                        "(/admin/keys)", code="key_budget")


BUDGET = Kind("budget", lambda gw, data, source: _budget(data, source=source), _owned_budget,
              lambda gw, m, spec: _budget_view(m, spec, m.client.budgets.status()),
              lambda gw, m: budget_views(m))


def budget_views(m: Managed) -> list[dict[str, Any]]:
    """Every budget (file, key and HTTP), its spec and status: what ``GET /admin/budgets``
    and the dashboard's budget page show."""
    specs, status = _budgets_now(m)
    return [_budget_view(m, s, status) for s in specs]


async def budgets(request: Request) -> Response:
    """``GET`` lists every budget with its status; ``POST`` creates one (201)."""
    return await _list_or_create(request, BUDGET)


async def budget(request: Request) -> Response:
    """``GET``, ``PATCH`` (fields merged, re-validated) or ``DELETE`` one budget."""
    if request.method != "GET":
        return await _change(request, BUDGET)
    _, _, m = await _admin(request)
    name = request.path_params["name"]
    found = [v for v in await asyncio.to_thread(budget_views, m) if v["name"] == name]
    if not found:
        raise HTTPError(404, f"no budget {name!r} (GET /admin/budgets lists them)", code="budget_not_found")
    return json_response(found[0])


# ── rules ────────────────────────────────────────────────────────────────────

def _check_rule(gw: Gateway, data: dict[str, Any], source: str) -> Any:
    """The rule ``data`` is, its ``use`` target resolved and priced (as at startup)."""
    from ..rules.spec import check_targets
    rule = _rule(data, source=source)
    client = gw.client
    if client.settings.on_missing_price == "record":
        def price(ref: Any) -> Any:
            return None
    else:
        def price(ref: Any) -> Any:
            return client.pricebook.price(ref.provider, ref.model)
    problems = check_targets([rule], client.resolve, price, source=source)
    if problems:
        raise problems[0]
    if rule.use is not None and not gw.reachable(client.resolve(rule.use).provider):
        raise errors.ConfigError("the rule's target is a model this gateway does not serve",
                                 file=source, key="use", value=rule.use)
    return rule


def _rule_view(m: Managed, rule: Any) -> dict[str, Any]:
    from ..rules.engine import _jsonable
    data = rule.model_dump(mode="json", exclude_defaults=True)
    return {"name": rule.name, "source": "http" if rule.name in m.http_rules else "file",
            "spec": _jsonable(data)}


_NO_METRICS: dict[str, Any] = {"applications": 0, "cost_usd": "0", "saved_usd": "0"}


def _rule_metrics(gw: Gateway) -> dict[str, dict[str, Any]]:
    """Per rule, from the ledger (every call ever recorded): calls it applied to, their cost
    and what they saved against the model asked for."""
    out = {}
    for row in gw.client.ledger.summary(by=["rule"], retries=False):
        if row.get("rule"):
            out[row["rule"]] = {"applications": row["calls"], "cost_usd": row["cost_usd"],
                                "saved_usd": row["saved_usd"]}
    return out


def _owned_rule(m: Managed, name: str) -> None:
    if any(r.name == name for r in m.file_rules):
        raise HTTPError(409, f"the rule {name!r} is defined in unillm.toml: change it there "
                        "(then POST /admin/reload or restart)", code="defined_in_file")


RULE = Kind("rule", _check_rule, _owned_rule, lambda gw, m, rule: _rule_view(m, rule),
            lambda gw, m: rule_views(gw))


def rule_views(gw: Gateway) -> list[dict[str, Any]]:
    """Every rule in evaluation order with its metrics: what ``GET /admin/rules`` and the
    dashboard's rule page show."""
    m = managed(gw)
    m.refresh()
    metrics = _rule_metrics(gw)
    return [{**_rule_view(m, r), "metrics": metrics.get(r.name, _NO_METRICS)} for r in (gw.client.rules or ())]


async def rules(request: Request) -> Response:
    """``GET`` lists every rule in evaluation order; ``POST`` creates one (201)."""
    return await _list_or_create(request, RULE)


async def rule(request: Request) -> Response:
    """``PATCH`` (fields merged, re-validated) or ``DELETE`` one rule created over HTTP."""
    return await _change(request, RULE)


async def rules_test(request: Request) -> Response:
    """``POST /admin/rules/test``: `Client.explain` for a chat body plus the estimated cost of
    the original and resulting request and the saving (`unillm.server.rule_test`)."""
    from . import rule_test
    gw, _, m = await _admin(request)
    model, messages, params, stream, tags = rule_test.parse(gw, await _json(request))
    await asyncio.to_thread(m.refresh)
    return json_response(await asyncio.to_thread(rule_test.answer, gw, model, messages, params, stream, tags))


def routes() -> list[Any]:
    """The admin routes, for `create_app`."""
    from starlette.routing import Route

    from . import health
    return [
        Route("/admin/audit", audit_log, methods=["GET"]),
        Route("/admin/budgets", budgets, methods=["GET", "POST"]),
        Route("/admin/budgets/{name}", budget, methods=["GET", "PATCH", "DELETE"]),
        Route("/admin/rules", rules, methods=["GET", "POST"]),
        Route("/admin/rules/test", rules_test, methods=["POST"]),
        Route("/admin/rules/{name}", rule, methods=["PATCH", "DELETE"]),
        Route("/admin/health", health.endpoint, methods=["GET"]),
        Route("/admin/reload", reload, methods=["POST"]),
    ]


__all__ = ["Managed", "managed", "refresh", "routes", "REFRESH_SECONDS"]


# ── hot reload ───────────────────────────────────────────────────────────────

def _price_book(settings: Any) -> Any:
    """The price book ``settings`` name, built as the client builds its own."""
    from ..adapters.cloud import price_tables
    from ..pricing import PriceBook
    return PriceBook.load(settings.pricing).priced_as(price_tables(settings.providers))


def reload_config(gw: Gateway, actor: str) -> dict[str, Any]:
    """Re-read the gateway's ``unillm.toml`` and apply its rules and budgets.

    An invalid file raises the `ConfigError` startup would (the running config stays).
    Price files are re-read too (the bundled book merged with the file's ``pricing``): calls
    priced from then on use them. Providers, ledger, cache and ``[server]`` are not re-applied
    (restart for those). Calls already admitted finish with the rules and budget holds they
    started with."""
    from pathlib import Path

    from ..config import load_settings
    m = managed(gw)
    source = gw.client.settings.source
    if not source or not Path(source).is_file():
        raise HTTPError(409, "this gateway was not started from a config file: nothing to reload",
                        code="no_config_file")
    new = load_settings(source, deep=True)  # ConfigError: the same message as at startup
    book = _price_book(new)                  # a broken price file: the same, and nothing changes
    before = {"rules": [r.name for r in m.file_rules], "budgets": sorted(m.file_budgets),
              "pricing": gw.client.settings.pricing}
    with m._lock:
        budgets = gw.client.budgets
        kept = [s for s in budgets.specs if s.name not in m.file_budgets]
        new_names = {b.name for b in new.budgets}
        budgets.specs = list(new.budgets) + [s for s in kept if s.name not in new_names]
        m.file_budgets = frozenset(new_names)
        m.file_rules = list(new.rules)
        m._seen = None  # rebuild the rule set (file rules first, HTTP rules the file now defines dropped)
        gw.client.use_pricebook(book)
    m.refresh()
    after = {"rules": [r.name for r in m.file_rules], "budgets": sorted(m.file_budgets), "pricing": new.pricing}
    audit.record(m.store, actor, "config.reload", f"config:{source}", before, after)
    return {"reloaded": source, **after}


async def reload(request: Request) -> Response:
    """``POST /admin/reload``: `reload_config`; a bad file is a 400 with the startup message."""
    gw, key, _ = await _admin(request)
    try:
        answer = await asyncio.to_thread(reload_config, gw, key.id)
    except errors.ConfigError as exc:
        raise HTTPError(400, f"config not reloaded (the running one stays): {exc}",
                        code="invalid_config") from None
    return json_response(answer)


def on_sighup(gw: Gateway) -> None:
    """Reload on ``SIGHUP`` (where the event loop can take signals: the main thread, POSIX)."""
    import logging
    import signal
    log = logging.getLogger("unillm.server")

    def hup() -> None:
        try:
            done = reload_config(gw, "signal:SIGHUP")
            log.warning("SIGHUP: reloaded %s", done["reloaded"])
        except (errors.ConfigError, HTTPError) as exc:
            log.error("SIGHUP: config not reloaded (the running one stays): %s", exc)
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        pass  # not the main thread, or no SIGHUP (Windows): POST /admin/reload still works
