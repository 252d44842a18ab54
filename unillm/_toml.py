"""Reading TOML files with errors that name the file, the line and the key."""

from __future__ import annotations

import sys
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

_SECRET_WORDS = ("key", "secret", "token", "password", "auth")

from . import errors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def load_toml(path: str | Path, *, decimal: bool = False) -> dict[str, Any]:
    """Parse a TOML file; floats become Decimal when ``decimal`` (money must be exact)."""
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


def pydantic_error_to_config_error(exc: ValidationError, *, file: str | None,
                                   prefix: str = "", model: type[BaseModel] | None = None) -> errors.ConfigError:
    """Every validation problem as one ConfigError naming file, dotted key and value; an
    unknown key gets a did-you-mean from the model's fields (``model``, else found by name)."""
    problems = []
    first_key, first_value = None, None
    model = model or _model_named(exc.title)
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = errors.did_you_mean(str(err["loc"][-1]), _fields_at(model, err["loc"][:-1]))
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
        value = err.get("input")
        if any(w in key.lower() for w in _SECRET_WORDS) and not key.endswith("_env"):
            value = "<redacted>"  # a mistyped api_key must not print the key
        # an unknown key is often a typo of a secret's name: never echo its value
        show = err["type"] not in ("missing", "extra_forbidden")
        problems.append(f"{key}: {msg}" + (f" (got {_short(value)})" if show else ""))
        if first_key is None:
            first_key, first_value = key, (value if show else None)
    error = errors.ConfigError("; ".join(problems) or str(exc), file=file, value=first_value)
    error.key = first_key
    error.lines = problems  # type: ignore[attr-defined]
    return error


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
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
        while typing.get_origin(current) in (list, dict, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
    fields = getattr(current, "model_fields", None)
    return list(fields) if isinstance(current, type) and fields else []
