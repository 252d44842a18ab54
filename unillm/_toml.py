"""Reading TOML files with errors that name the file, the line and the key."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

#: words that make a config key secret when they are a whole word of its name: ``api_key`` and
#: ``session_token`` are, ``prompt_tokens_below`` and ``keywords_any`` are not
_SECRET_WORDS = frozenset({"key", "apikey", "secret", "token", "password", "passwd", "auth",
                           "authorization", "credential", "credentials"})
#: error types whose input is not worth echoing (absent, a typo'd key's value, said already)
_QUIET = ("missing", "extra_forbidden", "provider", "duplicate")

from . import errors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def load_toml(path: str | Path, *, decimal: bool = False) -> dict[str, Any]:
    """Parse a TOML file; floats become Decimal when ``decimal`` (money must be exact).
    Whatever stops it (no such file, a directory, a NUL in the name, bad TOML or UTF-8) is a
    `ConfigError` naming the file."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise errors.ConfigError(f"a config file is a path, not {_short(path)}", file=None, key="config")
    path = Path(path)
    try:
        with path.open("rb") as fh:
            if decimal:
                return tomllib.load(fh, parse_float=Decimal)
            return tomllib.load(fh)
    except FileNotFoundError:
        raise errors.ConfigError("file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(f"not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 file=str(path)) from None
    except ValueError:  # a NUL byte in the name
        raise errors.ConfigError("not a file name (it contains a NUL byte)", file=repr(str(path)),
                                 key="config") from None
    except OSError as exc:
        raise errors.ConfigError(f"cannot be read: {exc.strerror or exc}", file=str(path)) from None


def pydantic_error_to_config_error(exc: ValidationError, *, file: str | None,
                                   prefix: str = "", model: type[BaseModel] | None = None) -> errors.ConfigError:
    """Every validation problem as one ConfigError naming file, dotted key and value; an
    unknown key gets a did-you-mean from the model's fields (``model``, else found by name)."""
    def label(loc: tuple[Any, ...]) -> str:
        dotted = ".".join(str(p) for p in loc)
        return f"{prefix}.{dotted}" if prefix and dotted else (prefix or dotted)
    found = config_errors(exc, file=file, model=model, label=label)
    if not found:
        return errors.ConfigError(str(exc), file=file)
    lines = [str(e).removeprefix(f"{file}: ") if file else str(e) for e in found]
    err = errors.ConfigError("; ".join(lines), file=file, value=found[0].value)
    err.key = found[0].key
    err.lines = lines  # type: ignore[attr-defined]
    return err


def config_errors(exc: ValidationError, *, file: str | None, model: type[BaseModel] | None = None,
                  label: Callable[[tuple[Any, ...]], str]) -> list[errors.ConfigError]:
    """One ConfigError per validation problem, keyed ``label(loc)``; an unknown key gets a
    did-you-mean from the model's fields; a value under a secret-sounding key is redacted."""
    found = []
    model = model or _model_named(exc.title)
    for err in exc.errors():
        key = label(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = errors.did_you_mean(str(err["loc"][-1]), _fields_at(model, err["loc"][:-1]))
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
        value = err.get("input")
        if secret_named(err["loc"]):
            value = "<redacted>"  # a mistyped api_key must not print the key
        # an unknown key is often a typo of a secret's name: never echo its value
        show = err["type"] not in _QUIET and not isinstance(value, Mapping)
        found.append(errors.ConfigError(msg + (f" (got {_short(value)})" if show else ""), file=file,
                                        key=key or None, value=value if show else None))
    return found


def secret_named(loc: tuple[Any, ...]) -> bool:
    """Whether a value at ``loc`` (a pydantic error location) is under a secret-named key; a
    ``*_env`` key names an environment variable, not a secret."""
    names = [str(part).lower() for part in loc if isinstance(part, str)]
    if names and names[-1].endswith("_env"):
        return False
    return any(word in _SECRET_WORDS for name in names for word in re.split(r"[^a-z0-9]+", name))


def combine_errors(problems: list[errors.ConfigError], *, file: str | None) -> errors.ConfigError:
    """One ConfigError for many (each still on ``.problems``); one is returned as it is."""
    if len(problems) == 1:
        problems[0].problems = list(problems)  # type: ignore[attr-defined]
        return problems[0]
    lines: list[str] = []
    for p in problems:
        text = str(p)
        if p.file and text.startswith(f"{p.file}: "):
            text = text[len(p.file) + 2:]
        lines.extend(f"  - {part}" for part in getattr(p, "lines", None) or [text])
    err = errors.ConfigError(f"{len(lines)} problems:\n" + "\n".join(lines), file=file,
                             value=problems[0].value)
    err.key = problems[0].key
    err.problems = list(problems)  # type: ignore[attr-defined]
    return err


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_named(title: str) -> type[BaseModel] | None:
    """The unillm pydantic model a ValidationError's title names (for did-you-mean)."""
    stack: list[type[BaseModel]] = list(BaseModel.__subclasses__())
    found = None
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__name__ == title and cls.__module__.startswith("unillm"):
            if found is not None and found is not cls:
                return None  # ambiguous: no hint rather than a wrong one
            found = cls
    return found


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (sub)model at ``loc`` inside ``model``."""
    import typing
    current: Any = model
    keys = 0  # dict keys still to step over (``providers.openai``: "openai" is a key, not a field)
    for part in loc:
        if isinstance(part, int) or current is None or keys:
            keys -= 0 if isinstance(part, int) else min(keys, 1)
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
        while typing.get_origin(current) in (list, dict, typing.Union, types.UnionType, Annotated):
            if typing.get_origin(current) is Annotated:
                current = typing.get_args(current)[0]
                continue
            keys += typing.get_origin(current) is dict
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
    fields = getattr(current, "model_fields", None)
    return list(fields) if isinstance(current, type) and fields else []
