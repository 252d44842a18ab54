"""The response cache: never pay twice for the same answer, never serve a wrong one.

::

    backend = open_cache("disk:///var/cache/unillm?size_limit=1GB&ttl=86400")
    decision = CachePolicy(sampled=False).decide(request, option)      # cache= per call
    key = cache_key(ref, request, namespace=decision.namespace)        # after routing
    entry = backend.get(key) if decision.read else None                # hit -> replay
    ...
    if decision.write and is_storable(response, complete=True):
        backend.set(key, make_entry(response, chunks=..., cost_usd=...), decision.ttl)

Cache URLs: ``disk`` (the platform's user cache dir, or ``$UNILLM_HOME/cache``),
``disk:///ABS/PATH`` (options ``size_limit`` e.g. ``1GB``, ``ttl`` seconds),
``memory`` / ``memory://?max_entries=1000&ttl=60``, ``off``, and for a cache
shared by many hosts ``redis://[:PASSWORD@]HOST:PORT/DB`` (``rediss://`` for
TLS; options ``ttl``, ``prefix``, ``timeout`` seconds). Not configured (None):
``$UNILLM_CACHE``, else no cache at all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .. import errors
from .base import CacheBackend, CacheWarning, NullCache, Warn, configured_url
from .codec import (
    CachedEntry,
    CorruptEntry,
    chunks_from_response,
    decode,
    encode,
    is_storable,
    make_entry,
    replay_chunks,
    response_from_chunks,
)
from .key import KEY_SCHEMA_VERSION, cache_key
from .policy import CacheDecision, CachePolicy, is_sampled

__all__ = [
    "open_cache", "check_cache_url", "configured_url", "default_cache_dir", "default_cache_url", "parse_size", "cache_key",
    "KEY_SCHEMA_VERSION", "CacheBackend", "NullCache", "CacheWarning", "CachedEntry",
    "CorruptEntry", "encode", "decode", "make_entry", "replay_chunks", "chunks_from_response",
    "response_from_chunks", "is_storable", "CachePolicy", "CacheDecision", "is_sampled",
]

_SCHEMES = ("disk", "memory", "off", "redis", "rediss")
_OPTIONS = {"disk": ("size_limit", "ttl"), "memory": ("max_entries", "ttl"),
            "redis": ("ttl", "prefix", "timeout"), "rediss": ("ttl", "prefix", "timeout")}
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def default_cache_dir() -> Path:
    """``$UNILLM_HOME/cache``, else the platform's user cache directory for unillm."""
    home = os.environ.get("UNILLM_HOME")
    if home:
        return Path(home).expanduser() / "cache"
    import platformdirs
    return Path(platformdirs.user_cache_dir("unillm")) / "cache"


def default_cache_url() -> str:
    """``$UNILLM_CACHE`` when set, else the URL of ``cache = "disk"`` (the default directory)."""
    return os.environ.get("UNILLM_CACHE") or "disk:///" + quote(default_cache_dir().as_posix().lstrip("/"))


def open_cache(url: str | None, *, warn: Warn | None = None) -> CacheBackend:
    """A backend for a cache URL (see the module docstring).

    None means "not configured": ``$UNILLM_CACHE`` when set, else no cache
    (`NullCache`). A bad URL is a `ConfigError` naming it.
    """
    url = configured_url(url)
    if url is None:
        return NullCache()
    scheme, path, options = _parse(url)
    if scheme == "off":
        return NullCache()
    if scheme == "memory":
        from .memory import MemoryCache
        return MemoryCache(max_entries=int(options.get("max_entries", 1024)), ttl=options.get("ttl"))
    if scheme == "disk":
        return _disk(path, options, warn)
    from .redis import RedisCache  # scheme is redis or rediss
    return RedisCache(path, warn=warn, **options)


def check_cache_url(url: str) -> None:
    """Validate a cache URL without opening it (at config load): the scheme is known, the
    options are, and a disk cache's directory exists or can be created. A `ConfigError`."""
    scheme, path, _ = _parse(url)
    if scheme == "disk":
        _usable_dir(Path(path), url)


def _parse(url: Any) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(url, str) or not url.strip():
        raise errors.ConfigError("must be a cache URL such as 'disk', 'disk:///path', 'memory' or 'off'",
                                 key="cache", value=url)
    if "\x00" in url:
        raise errors.ConfigError("a cache URL may not contain a NUL byte", key="cache", value=_redact(url))
    url = url.strip()
    if url == "disk":
        return "disk", str(default_cache_dir()), {}
    return _split(url)


def _usable_dir(path: Path, url: str) -> None:
    """The directory, or its nearest existing parent, is a writable directory."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "is not a directory" if not probe.is_dir() else "is not writable"
        raise errors.ConfigError(f"disk cache directory cannot be used: {probe} {what}",
                                 key="cache", value=url)


def _disk(path: str | Path, options: dict[str, Any], warn: Warn | None) -> CacheBackend:
    from .disk import DiskCache
    return DiskCache(path, size_limit=options.get("size_limit"), ttl=options.get("ttl"), warn=warn)


def _split(url: str) -> tuple[str, str, dict[str, Any]]:
    """(scheme, path, validated options) of a cache URL."""
    if url in ("off", "memory"):
        return url, "", {}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or (scheme == "off"):
        close = errors.did_you_mean(scheme or url, _SCHEMES)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if url.startswith("/"):
            hint = f"; did you mean 'disk://{url}'?"
        raise errors.ConfigError(
            f"unknown cache scheme {scheme or url!r}{hint} (use 'disk', 'disk:///ABS/PATH', 'memory', "
            "'redis://HOST:PORT/DB' or 'off')",
            key="cache", value=_redact(url))
    options = _options(scheme, parts.query, _redact(url))
    if scheme in ("redis", "rediss"):
        return scheme, parts._replace(query="").geturl(), options
    if scheme == "memory":
        return scheme, "", options
    return scheme, _disk_path(parts.netloc, parts.path, url), options


def _disk_path(netloc: str, path: str, url: str) -> str:
    if netloc not in ("", "localhost"):
        raise errors.ConfigError(
            f"disk cache path must be absolute: write 'disk:///{netloc}{path}' (three slashes)",
            key="cache", value=url)
    path = unquote(path)
    if re.match(r"^/[A-Za-z]:[/\\]", path):  # disk:///C:/cache on Windows
        path = path[1:]
    if not path or not Path(path).is_absolute():
        raise errors.ConfigError("disk cache needs an absolute path: 'disk:///ABS/PATH'",
                                 key="cache", value=url)
    return path


def _options(scheme: str, query: str, url: str) -> dict[str, Any]:
    known = _OPTIONS[scheme]
    out: dict[str, Any] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            close = errors.did_you_mean(name, known)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise errors.ConfigError(f"unknown {scheme} cache option {name!r}; {hint}",
                                     key="cache", value=url)
        try:
            out[name] = _option_value(name, raw)
        except ValueError as exc:
            raise errors.ConfigError(f"{scheme} cache option {name}={raw!r}: {exc}",
                                     key="cache", value=url) from None
    return out


def _option_value(name: str, raw: str) -> Any:
    if name == "size_limit":
        return parse_size(raw)
    if name == "prefix":
        if not raw:
            raise ValueError("must not be empty")
        return raw
    if name == "max_entries":
        n = int(raw)
        if n < 1:
            raise ValueError("must be at least 1")
        return n
    seconds = float(raw)  # name is "ttl" or "timeout"
    if not seconds > 0:
        raise ValueError("must be a number of seconds > 0")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes from ``1048576``, ``500MB``, ``1GB`` (powers of 1000) or ``1GiB`` (of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError("a size is a number with an optional unit: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError("must be more than 0 bytes")
    return size


def _redact(url: str) -> str:
    """The URL without a password (``redis://:secret@host`` -> ``redis://***@host``)."""
    return re.sub(r"//[^/@]*@", "//***@", url)
