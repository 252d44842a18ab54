"""What every ``unillm`` sub-command shares: one config discovery, errors, tables, numbers.

Every command that reads or writes state finds its configuration the same way
(`find_config`): ``--config PATH``, else ``$UNILLM_CONFIG``, else ``./unillm.toml``,
else the built-in defaults. The ledger is ``--ledger``, else the config's ``ledger``,
else ``$UNILLM_LEDGER``, else the default file; the cache is ``--cache``, else the
config's ``cache``, else ``$UNILLM_CACHE``, else the default cache (the library's own
order). ``-v`` prints which config, ledger and cache a command used.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from .. import errors

CONFIG_ENV, LEDGER_ENV, CACHE_ENV = "UNILLM_CONFIG", "UNILLM_LEDGER", "UNILLM_CACHE"
CONFIG_FILE = "unillm.toml"

CONFIG_HELP = (f"the config file (default: ${CONFIG_ENV}, else ./{CONFIG_FILE} when it exists, "
               "else built-in defaults)")
LEDGER_HELP = (f"ledger URL, e.g. sqlite:///PATH.db (default: the config's ledger, else "
               f"${LEDGER_ENV}, else $UNILLM_HOME/ledger.db or the user data dir)")
CACHE_HELP = (f"cache URL, e.g. disk:///PATH (default: the config's cache, else ${CACHE_ENV}, "
              "else $UNILLM_HOME/cache or the user cache dir)")


# ── errors ───────────────────────────────────────────────────────────────────

def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """unillm errors become one clean line (ClickException); `main` shows the cause with UNILLM_DEBUG=1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.UnillmError as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


def guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; unillm errors, and a file the system refuses (a missing directory, no
    permission), become one clean ClickException line."""
    try:
        return fn()
    except errors.UnillmError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


def pricebook(pricing: str | None) -> Any:
    """The bundled price book merged with the ``pricing`` file; a bad file is one clean line."""
    from ..pricing import PriceBook
    return guard(lambda: PriceBook.load(pricing))


# ── config discovery ─────────────────────────────────────────────────────────

def find_config(path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """The config file a command uses and how it was found.

    ``path`` (``--config``), else ``$UNILLM_CONFIG``, else ``./unillm.toml`` when it
    exists, else ``(None, "built-in defaults")``. A named file that does not exist is an
    error: a typo must not silently fall back to the defaults.
    """
    for given, how in ((path, "--config"), (os.environ.get(CONFIG_ENV) or None, f"${CONFIG_ENV}")):
        if given is not None:
            p = Path(given)
            if not p.is_file():
                raise click.ClickException(f"{p}: config file not found (from {how})")
            return p, how
    if Path(CONFIG_FILE).is_file():
        return Path(CONFIG_FILE), f"./{CONFIG_FILE} in the working directory"
    return None, "built-in defaults (no --config, no $UNILLM_CONFIG, no ./unillm.toml)"


@dataclass
class State:
    """The config, ledger and cache one command invocation works with."""

    config_option: str | None = None
    ledger_option: str | None = None
    cache_option: str | None = None
    verbose: bool = False
    ledger_flag: str = "--ledger"   # how the command spells its ledger option (migrate: --from)
    _found: tuple[Path | None, str] | None = field(default=None, repr=False)
    _settings: Any = field(default=None, repr=False)

    @property
    def config(self) -> Path | None:
        return self._find()[0]

    def _find(self) -> tuple[Path | None, str]:
        if self._found is None:
            self._found = find_config(self.config_option)
        return self._found

    @property
    def settings(self) -> Any:
        """The config file's validated `Settings`, as written (the built-in defaults without one)."""
        if self._settings is None:
            from ..config import load_settings
            self._settings = guard(lambda: load_settings(self.config))
        return self._settings

    def _pick(self, option: str | None, key: str, env: str) -> tuple[str | None, str]:
        if option:
            return option, self.ledger_flag if key == "ledger" else f"--{key}"
        configured = getattr(self.settings, key) if self.config else None
        if configured:
            return configured, f"{key} in {self.config}"
        if os.environ.get(env):
            return os.environ[env], f"${env}"
        return None, "default"

    @property
    def ledger_url(self) -> str | None:
        """The ledger URL (None: the default file)."""
        return self._pick(self.ledger_option, "ledger", LEDGER_ENV)[0]

    @property
    def cache_url(self) -> str | None:
        """The cache URL (None: the library's default cache)."""
        return self._pick(self.cache_option, "cache", CACHE_ENV)[0]

    def overrides(self) -> dict[str, Any]:
        """`Client` keyword arguments for what the command line or environment decides."""
        out: dict[str, Any] = {}
        for key, option, env in (("ledger", self.ledger_option, LEDGER_ENV),
                                 ("cache", self.cache_option, CACHE_ENV)):
            url, how = self._pick(option, key, env)
            if url is not None and not how.startswith(f"{key} in "):
                out[key] = url
        return out

    def client(self, **extra: Any) -> Any:
        """A `Client` built from the config (ledger and cache opened only when used)."""
        from ..client import Client
        kwargs = {**self.overrides(), **extra}
        return guard(lambda: Client.from_config(self.config, **kwargs) if self.config
                     else Client(**kwargs))

    def open_ledger(self, create: bool = False) -> Any:
        """The ledger's store; ``create=False`` refuses a missing SQLite file (readers).

        Writers open it through the `Client`, exactly as `unillm serve` and the library do.
        """
        if create:
            client = self.client()
            return guard(lambda: client.ledger.store)
        from ..ledger.stores import open_store
        return guard(lambda: open_store(self.ledger_url, create=False))

    def describe(self, *, ledger: bool = True, cache: bool = False) -> list[str]:
        """Which config, ledger and cache this command uses, one line each."""
        path, how = self._find()
        lines = [f"config: {path} ({how})" if path else f"config: {how}"]
        if ledger:
            url, how = self._pick(self.ledger_option, "ledger", LEDGER_ENV)
            lines.append(f"ledger: {_redact(url) if url else _default_ledger()} ({how})")
        if cache:
            url, how = self._pick(self.cache_option, "cache", CACHE_ENV)
            lines.append(f"cache:  {url if url else _default_cache()} ({how})")
        return lines

    def say(self, *, ledger: bool = True, cache: bool = False) -> None:
        """With ``-v``: print `describe` to standard error."""
        if self.verbose:
            for line in self.describe(ledger=ledger, cache=cache):
                click.echo(line, err=True)


def _redact(url: str) -> str:
    from ..ledger.urls import redact
    return redact(url)


def _default_ledger() -> str:
    from ..ledger.stores import default_path
    return f"sqlite:///{default_path().as_posix().lstrip('/')}"


def _default_cache() -> str:
    from ..cache import default_cache_url
    return default_cache_url()



class FilePath(click.Path):
    """`click.Path` that refuses an empty path or a NUL byte with a usage error (click's own
    check would raise a bare ``ValueError`` from ``os.stat``; an empty path, a
    ``FileNotFoundError`` when written)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "\x00" in value:
            self.fail("a path cannot contain a NUL byte", param, ctx)
        if isinstance(value, str) and not value.strip():
            self.fail("a path cannot be empty", param, ctx)
        return super().convert(value, param, ctx)


def state_options(*, ledger: bool = True, cache: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--config``, ``-v`` (and ``--ledger``/``--cache``) to a command; it receives ``state``."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, config: str | None = None, ledger_option: str | None = None,
                    cache_option: str | None = None, verbose: bool = False, **kwargs: Any) -> Any:
            return fn(*args, state=State(config, ledger_option, cache_option, verbose), **kwargs)
        opts = [click.option("--config", "config", metavar="PATH", default=None,
                             type=FilePath(dir_okay=False), help=CONFIG_HELP)]
        if ledger:
            opts.append(click.option("--ledger", "ledger_option", metavar="URL", default=None,
                                     help=LEDGER_HELP))
        if cache:
            opts.append(click.option("--cache", "cache_option", metavar="URL", default=None,
                                     help=CACHE_HELP))
        used = ["config", *(["ledger"] if ledger else []), *(["cache"] if cache else [])]
        said = ", ".join(used[:-1]) + " and " + used[-1] if len(used) > 1 else used[0]
        opts.append(click.option("-v", "--verbose", is_flag=True,
                                 help=f"say which {said} this command uses (on standard error)"))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper
    return decorate


# ── dimensions (--by, --where) ───────────────────────────────────────────────

#: tags unillm itself sets (``unillm keys create --user/--project``), accepted without ``tag:``
BARE_TAGS = ("user", "project")


_FIRST = ("provider", "model", "requested_model", "status", "section", "rule", "saved_reason")


def dimensions() -> list[str]:
    """What ``--by`` and ``--where`` accept (besides ``tag:NAME``), the usual ones first."""
    from ..ledger.query import COLUMN_DIMENSIONS, TIME_DIMENSIONS
    first = [d for d in _FIRST if d in COLUMN_DIMENSIONS]
    return [*first, *TIME_DIMENSIONS, *BARE_TAGS, *sorted(COLUMN_DIMENSIONS - set(first))]


def check_dimension(name: str, option: str) -> str:
    """``name`` if it is a known dimension or ``tag:NAME``; else an error with did-you-mean."""
    name = name.strip()
    known = dimensions()
    if name in known or (name.startswith("tag:") and len(name) > 4):
        return name
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise click.ClickException(f"{option} {name!r}: unknown dimension; {hint}use one of "
                               f"{', '.join(known)}, or tag:NAME for any tag (e.g. tag:{name or 'team'})")


#: ``--where KEY=VALUE``, repeatable: every command that filters the ledger (see `where_pairs`)
#: ``--format table|json``: a table for people, JSON for machines
FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="table for people, json for machines")
WHERE_OPTION = click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
                            help="filter, repeatable: model=gpt-4o, tag:user=u42, section=agent:x")


def where_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--where KEY=VALUE`` (repeatable; a repeated key matches any of its values)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.ClickException(f"--where {pair!r}: expected KEY=VALUE, e.g. model=gpt-4o")
        key = check_dimension(key, "--where")
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


# ── numbers and tables for people ────────────────────────────────────────────

def plain_decimal(d: Decimal) -> str:
    """Exact, never in exponent form, trailing zeros dropped: ``0.00000045``, ``12``."""
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def usd(value: Decimal | int | str | None) -> str:
    """Exact money: ``$0.00000045``, ``$1.50``, ``-$0.062395`` (at least cents, never rounded)."""
    if value is None:
        return "-"
    d = Decimal(value)
    whole, _, frac = plain_decimal(abs(d)).partition(".")
    return f"{'-' if d < 0 else ''}${whole}.{frac.ljust(2, '0')}"


def ms(value: float | None) -> str:
    """Latency in milliseconds, one decimal."""
    return "-" if value is None else f"{value:.1f}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 fallback``, ``2 fallbacks``, ``1 entry`` / ``2 entries`` (with ``many``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, Decimal):
        return plain_decimal(v)
    if isinstance(v, float):
        return ms(v)  # the only floats in ledger tables are latencies
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    from ..ledger import export as exporter
    return str(exporter.plain(v))


def _numeric(v: str) -> bool:
    return v.replace(".", "", 1).replace("-", "", 1).replace(",", "").isdigit()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned plain-text columns, numbers right-aligned."""
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def show_rows(rows: Sequence[dict[str, Any]], fmt: str, *, empty: str,
              render: Callable[[Sequence[dict[str, Any]]], str]) -> None:
    """A status command's answer: ``rows`` as JSON under ``--format json``; else ``empty`` when
    there are none, else ``render(rows)`` (the table for people)."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    elif not rows:
        click.echo(empty)
    else:
        click.echo(render(rows))
