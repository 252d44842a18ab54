"""``unillm pricing``: show a model's price, check a config is priced, import and diff price files."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from .. import errors
from ..price_files import Layer, read_layer
from ..pricing import TOKEN_KEYS, UNIT_KEYS, Price, PriceBook, bundled_path
from ..pricing import today as book_today
from ._common import FORMAT_OPTION, FilePath, State, state_options, user_errors


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=lambda o: str(o) if isinstance(o, (Decimal, date)) else o)


@click.group()
def group() -> None:
    """Price book: show prices, check a config, import LiteLLM's catalog, diff files."""


# ── show ─────────────────────────────────────────────────────────────────────

def _price_dict(p: Price) -> dict[str, Any]:
    return {"since": p.since, "until": p.until, "source": p.source, "prices": dict(p.rows()),
            "tiers": [{k: v for k, v in vars(t).items() if v is not None} for t in p.tiers]}


def _locate(model: str, book: PriceBook) -> tuple[str, str]:
    """(provider, model) for what the user typed: profiles first, then the price book."""
    from ..profiles import Resolver, build_settings
    try:
        ref = Resolver(build_settings()).resolve(model)
        return ref.provider, ref.model
    except errors.UnknownModelError as exc:
        owners = sorted({pm.provider for pm in book.models() if model == pm.name or model in pm.aliases})
        if len(owners) == 1:
            return owners[0], model
        if owners:
            raise click.ClickException(f"{model!r} is priced by several providers; write one of: "
                                       + ", ".join(f"{o}/{model}" for o in owners)) from None
        raise click.ClickException(str(exc)) from None


@group.command()
@click.argument("model")
@click.option("--pricing", "pricing_file", type=FilePath(dir_okay=False),
              help="a price file merged over the bundled book")
@click.option("--at", "at", type=click.DateTime(["%Y-%m-%d"]), help="price in force on this date (UTC)")
@FORMAT_OPTION
@user_errors
def show(model: str, pricing_file: str | None, at: Any, fmt: str) -> None:
    """Prices in force for MODEL ('provider/model' or a bare name) and where they come from."""
    from ..adapters.cloud import price_tables
    from ..profiles import build_settings
    book = PriceBook.load(pricing_file).priced_as(price_tables(build_settings()))
    provider, name = _locate(model, book)
    found = book.resolve(provider, name)
    pm = found.priced
    if pm is None:
        missing = errors.MissingPriceError(provider, name, book.suggest(provider, name))
        raise click.ClickException("\n".join([str(missing), *(f"looked up: {s}" for s in found.path)]))
    price = pm.at(at.date() if at else book_today())
    if fmt == "json":
        click.echo(_json({"requested": model, "provider": provider, "model": price.model,
                          "book_version": book.version, "aliases": list(pm.aliases),
                          "resolution": list(found.path),
                          "max_output_tokens": price.max_output_tokens,
                          **_price_dict(price),
                          "history": [_price_dict(p) for p in pm.entries[:-1]]}))
        return
    click.echo(f"{pm.provider}/{price.model}" + (f"  (requested {model})" if price.model != name else ""))
    click.echo("resolution:")
    for step in found.path:
        click.echo(f"  {step}")
    click.echo(f"source: {price.source}  (book {book.version})")
    span = f"since {price.since}" if price.since else "no start date"
    click.echo(f"in force: {span}" + (f", until {price.until}" if price.until else ""))
    if pm.aliases:
        click.echo("aliases: " + ", ".join(pm.aliases))
    limit = price.max_output_tokens
    click.echo(f"max output: {limit} tokens" if limit else "max output: unknown")
    rows = [(k, v, "USD / 1M tokens" if k in TOKEN_KEYS else _UNIT_LABEL[k]) for k, v in price.rows()]
    click.echo(_table(rows, ["price", "usd", "unit"]))
    for t in price.tiers:
        tier = ", ".join(f"{k} {getattr(t, k)}" for k in TOKEN_KEYS if getattr(t, k) is not None)
        click.echo(f"tier: prompt > {t.above_prompt_tokens} tokens bills the whole request at {tier}")
    for old in pm.entries[:-1]:
        prices = ", ".join(f"{k} {v}" for k, v in old.rows())
        click.echo(f"history: {old.since or '...'} .. {old.until}: {prices}")


_UNIT_LABEL = {"per_call": "USD / call", "per_image": "USD / image", "per_1k_chars": "USD / 1k chars",
               "per_minute": "USD / minute"}


# ── check ────────────────────────────────────────────────────────────────────

def _targets(settings: Any) -> Iterable[tuple[str, str]]:
    """(where in the config, model string) for every alias, rule target and fallback."""
    for alias in settings.aliases:
        yield f"aliases.{alias}", alias
    for i, rule in enumerate(settings.rules):
        if rule.use is not None:
            yield f"rules[{i}].use ({rule.name})", rule.use
    for i, fb in enumerate(settings.fallbacks):
        yield f"fallbacks[{i}].model", fb.model
        for j, then in enumerate(fb.then):
            yield f"fallbacks[{i}].then[{j}]", then
    for i, budget in enumerate(settings.budgets):
        if budget.downgrade_to is not None:
            yield f"budgets[{i}].on_exceed", budget.downgrade_to


@group.command()
@state_options(ledger=False)
@FORMAT_OPTION
@user_errors
def check(state: State, fmt: str) -> None:
    """Every alias, rule target and fallback in the config has a price (exit 1 if not)."""
    from ..profiles import Resolver
    state.say(ledger=False)
    settings, config = state.settings, str(state.config or "built-in defaults")
    from ..adapters.cloud import price_tables
    resolver = Resolver(settings.providers, settings.aliases)
    book = PriceBook.load(settings.pricing).priced_as(price_tables(settings.providers))
    results = []
    for where, model in _targets(settings):
        try:
            ref = resolver.resolve(model)
            price = book.price(ref.provider, ref.model)
            results.append({"where": where, "model": model, "resolved": str(ref), "priced": True,
                            "detail": price.source})
        except (errors.MissingPriceError, errors.UnknownModelError) as exc:
            resolved = f"{exc.provider}/{exc.model}" if isinstance(exc, errors.MissingPriceError) else ""
            results.append({"where": where, "model": model, "resolved": resolved, "priced": False,
                            "detail": "no price" if resolved else str(exc)})
    bad = [r for r in results if not r["priced"]]
    if fmt == "json":
        click.echo(_json({"config": config, "book_version": book.version, "targets": results}))
    elif results:
        click.echo(_table([(r["where"], r["model"], r["resolved"], "ok" if r["priced"] else "UNPRICED",
                            r["detail"]) for r in results], ["where", "model", "resolves to", "status", "price"]))
    else:
        click.echo(f"{config}: no aliases, rule targets or fallbacks to check")
    if bad:
        raise click.ClickException(f"{len(bad)} unpriced: " + ", ".join(
            f"{r['where']} = {r['model']}" for r in bad))


# ── import ───────────────────────────────────────────────────────────────────

#: LiteLLM ``litellm_provider`` -> our provider (profile) name
LITELLM_PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "google",
    "vertex_ai-language-models": "google", "cohere_chat": "cohere", "cohere": "cohere",
    "groq": "groq", "mistral": "mistral", "deepseek": "deepseek", "together_ai": "together",
    "fireworks_ai": "fireworks", "openrouter": "openrouter", "xai": "xai",
    "perplexity": "perplexity", "ollama": "ollama", "vllm": "vllm",
}
_FIELDS = {"input_cost_per_token": "input", "output_cost_per_token": "output",
           "cache_read_input_token_cost": "cached_input", "cache_creation_input_token_cost": "cache_write",
           # the 1-hour-TTL cache write rate (Anthropic), not a prompt-size band
           "cache_creation_input_token_cost_above_1hr": "cache_write_1h"}
_TIER_FIELD = re.compile(r"^(?P<field>input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
                         r"|cache_creation_input_token_cost_above_1hr|cache_creation_input_token_cost)"
                         r"_above_(?P<k>\d+)k_tokens$")
_MODES = {"chat", "responses"}
#: LiteLLM's key for a model's output limit (its ``max_tokens`` is ambiguous: not imported)
_MAX_OUTPUT = "max_output_tokens"


def per_million(per_token: Any) -> Decimal:
    """LiteLLM's per-token float as an exact per-1M Decimal (via its shortest repr)."""
    if isinstance(per_token, bool) or not isinstance(per_token, (int, float, str)):
        raise ValueError(f"not a number: {per_token!r}")  # noqa: TRY004 - the import reports ValueErrors per entry
    value = Decimal(str(per_token)).scaleb(6)
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a price: {per_token!r}")
    return value


def convert_litellm(catalog: dict[str, Any], keep_unknown: bool = False) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """LiteLLM's model map -> our tables ``{(provider, model): {...}}`` and skip notes."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[str] = []
    # entries mapped from a provider's own API win over vertex copies of the same model
    order = sorted(catalog.items(), key=lambda kv: str((kv[1] or {}).get("litellm_provider", "")).startswith("vertex"))
    for key, spec in order:
        if not isinstance(spec, dict) or key == "sample_spec":
            continue
        lp = str(spec.get("litellm_provider", ""))
        provider = LITELLM_PROVIDERS.get(lp) or (lp if keep_unknown and lp else None)
        if provider is None or spec.get("mode", "chat") not in _MODES:
            continue
        head, sep, rest = key.partition("/")
        model = rest if sep and head in {lp, provider, lp.split("-")[0], "gemini", "vertex_ai"} else key
        try:
            table = _convert_entry(spec)
        except ValueError as exc:
            skipped.append(f"{key}: {exc}")
            continue
        if table is None:
            skipped.append(f"{key}: no input/output price per token")
        elif (provider, model) not in out:
            out[(provider, model)] = table
            _add_max_output(table, spec, key, skipped)
    return out, skipped


def _convert_entry(spec: dict[str, Any]) -> dict[str, Any] | None:
    if spec.get("input_cost_per_token") is None or spec.get("output_cost_per_token") is None:
        return None
    table: dict[str, Any] = {ours: per_million(spec[theirs]) for theirs, ours in _FIELDS.items()
                             if spec.get(theirs) is not None}
    tiers: dict[int, dict[str, Any]] = {}
    for name, value in spec.items():
        m = _TIER_FIELD.match(name)
        if m and value is not None:
            tier = tiers.setdefault(int(m["k"]) * 1000, {})
            tier[_FIELDS[m["field"]]] = per_million(value)
    if tiers:
        table["tiers"] = [{"above_prompt_tokens": above, "input": t.get("input", table["input"]),
                           "output": t.get("output", table["output"]),
                           **{k: v for k, v in t.items() if k not in ("input", "output")}}
                          for above, t in sorted(tiers.items())]
    return table


def _add_max_output(table: dict[str, Any], spec: dict[str, Any], key: str, skipped: list[str]) -> None:
    """LiteLLM's ``max_output_tokens`` into ``table``; a bad value is noted, the prices kept."""
    value = spec.get(_MAX_OUTPUT)
    if value is None:
        return
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        skipped.append(f"{key}: max_output_tokens {value!r} is not a positive whole number (left out)")
        return
    table["max_output_tokens"] = value


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _toml_number(value: Decimal | int) -> str:
    if isinstance(value, int):
        return str(value)
    return format(value.normalize(), "f")  # plain digits: a valid TOML int or float


def render_toml(tables: dict[tuple[str, str], dict[str, Any]], header: str) -> str:
    """Our price-file TOML for ``tables`` (prices, tiers), sorted by provider and model."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for (provider, model), table in sorted(tables.items()):
        name = f"{_toml_key(provider)}.{json.dumps(model)}"
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_number(v)}" for k, v in table.items() if k != "tiers"]
        for tier in table.get("tiers", ()):
            lines += ["", f"[[{name}.tiers]]"]
            lines += [f"{k} = {_toml_number(v)}" for k, v in tier.items()]
    return "\n".join(lines) + "\n"


@group.command("import")
@click.argument("file", type=FilePath(exists=True, dir_okay=False))
@click.option("-o", "--output", "out", type=FilePath(dir_okay=False), help="write here (default: stdout)")
@click.option("--keep-unknown", is_flag=True, help="keep providers unillm has no profile for")
@user_errors
def import_(file: str, out: str | None, keep_unknown: bool) -> None:
    """Convert LiteLLM's model_prices_and_context_window.json into a unillm price file."""
    try:
        catalog = json.loads(Path(file).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(catalog, dict):
        raise click.ClickException(f"{file}: expected a JSON object of models (LiteLLM's model map)")
    tables, skipped = convert_litellm(catalog, keep_unknown)
    text = render_toml(tables, f"Imported from {Path(file).name} (LiteLLM's model map) by "
                               "`unillm pricing import`.\nUSD per 1M tokens; see the bundled "
                               "pricing.toml for the format.")
    with tempfile.TemporaryDirectory() as tmp:  # what we write must read back as a valid book
        check = Path(tmp) / (Path(out).name if out else "imported.toml")
        check.write_text(text, encoding="utf-8")
        PriceBook.from_file(check)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(tables)} models to {out}" + (f"; skipped {len(skipped)}" if skipped else ""),
                   err=True)
    else:
        click.echo(text, nl=False)
    for note in skipped[:20]:
        click.echo(f"skipped {note}", err=True)


# ── diff ─────────────────────────────────────────────────────────────────────

def _read(spec: str) -> Layer:
    return read_layer(bundled_path() if spec == "bundled" else spec)


def _comparable(table: dict[str, Any]) -> dict[str, Any]:
    out = {k: table[k] for k in (*TOKEN_KEYS, *UNIT_KEYS, "since", "max_output_tokens", "snapshots")
           if k in table}
    for k in ("tiers", "history", "aliases"):
        if k in table:
            out[k] = _json(table[k]).replace("\n", "").replace("  ", "")
    return out


def _delta(old: Any, new: Any) -> str:
    if isinstance(old, Decimal) and isinstance(new, Decimal) and old:
        return f"{(new - old) / old * 100:+.1f}%"
    return ""


@group.command()
@click.argument("old")
@click.argument("new")
@FORMAT_OPTION
@user_errors
def diff(old: str, new: str, fmt: str) -> None:
    """What changed between two price files (either may be 'bundled')."""
    la, lb = _read(old), _read(new)
    a, b = la.tables, lb.tables
    rows = []
    for provider in sorted(set(la.settings) | set(lb.settings)):   # [provider] snapshots = ...
        x, y = la.settings.get(provider, {}), lb.settings.get(provider, {})
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                rows.append({"change": "changed", "model": provider, "key": k, "old": x.get(k),
                             "new": y.get(k), "delta": ""})
    for key in sorted(set(a) | set(b)):
        name = f"{key[0]}/{key[1]}"
        if key not in a:
            rows.append({"change": "added", "model": name, "key": "", "old": None, "new": None})
            continue
        if key not in b:
            rows.append({"change": "removed", "model": name, "key": "", "old": None, "new": None})
            continue
        x, y = _comparable(a[key]), _comparable(b[key])
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                rows.append({"change": "changed", "model": name, "key": k, "old": x.get(k),
                             "new": y.get(k), "delta": _delta(x.get(k), y.get(k))})
    if fmt == "json":
        click.echo(_json({"old": old, "new": new, "changes": rows}))
    elif rows:
        click.echo(_table([(r["change"], r["model"], r["key"], r["old"], r["new"], r.get("delta", ""))
                           for r in rows], ["change", "model", "key", "old", "new", "delta"]))
    else:
        click.echo("no differences")


__all__ = ["group", "convert_litellm", "render_toml", "per_million"]
