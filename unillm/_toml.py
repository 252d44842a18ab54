"""Reading TOML files with errors that name the file, the line and the key."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
                                   prefix: str = "") -> errors.ConfigError:
    """The first validation problem as a ConfigError naming file, dotted key and value."""
    problems = []
    first_key, first_value = None, None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        value = err.get("input")
        if any(w in key.lower() for w in _SECRET_WORDS) and not key.endswith("_env"):
            value = "<redacted>"  # a mistyped api_key must not print the key
        # an unknown key is often a typo of a secret's name: never echo its value
        show = err["type"] not in ("missing", "extra_forbidden")
        problems.append(f"{key}: {msg}" + (f" (got {value!r})" if show else ""))
        if first_key is None:
            first_key, first_value = key, (value if show else None)
    err = errors.ConfigError("; ".join(problems) or str(exc), file=file, value=first_value)
    err.key = first_key
    return err
