"""``unillm rules``: explain which rules a call would hit, and lint a config's rules and fallbacks.

::

    unillm rules explain --config unillm.toml --model gpt-4o --prompt "hi" --tags user=a --at 23:30
    unillm rules lint --config unillm.toml            # exit status 1 when there are errors
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import click

from .. import errors
from ..config import Settings
from ..profiles import ModelRef, ProviderSettings, Resolver
from ..rules import RuleContext, RuleSet, explain_dict, format_explain, lint
from ..types import ChatRequest, Usage
from ._common import State, plural, pricebook, state_options, user_errors

_FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                       show_default=True, help="text for people, json for machines")


@click.group()
def group() -> None:
    """Optimization rules: explain a call, lint rules and fallbacks."""


# ── explain ──────────────────────────────────────────────────────────────────

def parse_tags(text: str | None) -> dict[str, str]:
    """``user=a,project=b`` -> ``{"user": "a", "project": "b"}``."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{part!r} is not KEY=VALUE", param_hint="--tags")
        out[key.strip()] = value.strip()
    return out


def parse_at(text: str | None, zone: ZoneInfo, now: datetime) -> datetime:
    """``23:30`` (today, in ``zone``), ``2026-11-22T23:30`` (in ``zone`` unless it has an offset)."""
    if not text:
        return now
    try:
        if len(text) <= 5 and ":" in text:
            t = time.fromisoformat(text if len(text) == 5 else "0" + text)
            return datetime.combine(now.astimezone(zone).date(), t, tzinfo=zone)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use HH:MM or YYYY-MM-DDTHH:MM", param_hint="--at") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def _load(state: State) -> tuple[Settings, RuleSet, Resolver]:
    state.say(ledger=False)
    settings = state.settings
    return settings, RuleSet(settings.rules, timezone=settings.timezone), Resolver(settings.providers,
                                                                                    settings.aliases)


def _token_counter(request: ChatRequest, ref: ModelRef, provider: ProviderSettings | None,
                   given: int | None) -> Callable[[], int]:
    if given is not None:
        return lambda: given

    def count() -> int:
        from ..tokens import count_prompt
        return count_prompt(request, ref.model, provider)[0]
    return count


def _cost_estimator(settings: Settings, ref: ModelRef, tokens: Callable[[], int],
                    max_tokens: int | None, given: Decimal | None) -> Callable[[], Decimal | None]:
    """Worst case of the call: prompt tokens plus ``max_tokens`` at the model's price."""
    def estimate() -> Decimal | None:
        if given is not None:
            return given
        if max_tokens is None:
            return None  # no output bound, no worst case
        from ..adapters.cloud import price_tables
        from ..pricing import PriceBook
        try:
            book = PriceBook.load(settings.pricing).priced_as(price_tables(settings.providers))
            usage = Usage(input_tokens=tokens(), output_tokens=max_tokens, source="estimate")
            return book.cost(ref.provider, ref.model, usage).total_usd
        except errors.MissingPriceError:
            return None
    return estimate


def _decimal(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number") from None


@group.command()
@state_options(ledger=False)
@click.option("--model", required=True, help="the model the call asks for")
@click.option("--prompt", required=True, help="the latest user message")
@click.option("--system", default=None, help="a system message before the prompt")
@click.option("--tags", default=None, help="call tags, KEY=VALUE,KEY=VALUE (merged over the config's tags)")
@click.option("--at", "at", default=None, help="when: HH:MM today or YYYY-MM-DDTHH:MM (config timezone)")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="the request's max_tokens")
@click.option("--json-output", is_flag=True, help="the request asks for JSON output")
@click.option("--stream", is_flag=True, help="the call streams (chat(stream=True))")
@click.option("--tokens", "tokens", type=click.IntRange(min=0), default=None,
              help="prompt tokens to assume instead of counting them")
@click.option("--budget-used", type=click.FloatRange(min=0), default=None,
              help="fraction of the tightest budget already spent (default: unknown)")
@click.option("--estimated-cost", callback=_decimal, default=None,
              help="worst-case USD of the call (default: priced from --max-tokens)")
@_FORMAT
@user_errors
def explain(state: State, model: str, prompt: str, system: str | None, tags: str | None, at: str | None,
            max_tokens: int | None, json_output: bool, stream: bool, tokens: int | None, budget_used: float | None,
            estimated_cost: Decimal | None, fmt: str) -> None:
    """Show each rule, which conditions held or failed, and the resulting request."""
    settings, rules, resolver = _load(state)
    ref = resolver.resolve(model)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_output else {}
    request = ChatRequest(model=model, messages=messages, max_tokens=max_tokens, **extra)
    now = parse_at(at, rules.timezone, datetime.now(timezone.utc))
    count = _token_counter(request, ref, resolver.providers.get(ref.provider), tokens)
    ctx = RuleContext(request, ref, tags={**settings.tags, **parse_tags(tags)}, now=now, stream=stream,
                      prompt_tokens=count, budget_used=lambda: budget_used,
                      estimated_cost=_cost_estimator(settings, ref, count, max_tokens, estimated_cost))
    traces, decision = rules.explain(ctx), rules.evaluate(ctx)
    if fmt == "json":
        data = {"model": model, "resolved": str(ref), "at": now.isoformat(), "tags": ctx.tags,
                **explain_dict(traces, decision, request)}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"call: {model} ({ref}) at {now.strftime('%Y-%m-%d %H:%M %Z')}"
               + (f", tags {', '.join(f'{k}={v}' for k, v in ctx.tags.items())}" if ctx.tags else ""))
    click.echo(format_explain(traces, decision, request), nl=False)


# ── lint ─────────────────────────────────────────────────────────────────────

def _as_written(state: State) -> tuple[Settings, list[Any]]:
    """The settings but their rules, and the ``[[rules]]`` tables as written: lint reports
    each bad rule as a finding, where loading them would stop at the first file error."""
    from .._toml import load_toml
    from ..config import load_settings
    from ._common import guard
    path = state.config
    raw = guard(lambda: load_toml(path).get("rules", [])) if path else []
    return guard(lambda: load_settings(path, rules=[])), raw if isinstance(raw, list) else [raw]


@group.command(name="lint")
@state_options(ledger=False)
@_FORMAT
@user_errors
def lint_cmd(state: State, fmt: str) -> None:
    """Find unknown or unpriced targets, invalid rules, shadowed rules, fallback cycles."""
    state.say(ledger=False)
    settings, rules = _as_written(state)
    resolver: Any = Resolver(settings.providers, settings.aliases)
    if settings.deployments:  # a [[deployments]] model name is a known target
        from types import SimpleNamespace

        from ..routing.spec import target_resolver
        resolver = SimpleNamespace(resolve=target_resolver(settings, resolver.resolve))
    from ..adapters.cloud import price_tables
    book = pricebook(settings.pricing).priced_as(price_tables(settings.providers))
    findings = lint(rules, settings.fallbacks, resolver, book,
                    source=settings.source, timezone=settings.timezone,
                    on_missing_price=settings.on_missing_price)
    n_err = sum(f.level == "error" for f in findings)
    if fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        for f in findings:
            click.echo(str(f))
        n_warn = len(findings) - n_err
        click.echo(f"{settings.source}: {plural(len(rules), 'rule')}, "
                   f"{plural(len(settings.fallbacks), 'fallback')}: "
                   + (f"{plural(n_err, 'error')}, {plural(n_warn, 'warning')}" if findings
                      else "no problems found"))
    if n_err:
        sys.exit(1)
