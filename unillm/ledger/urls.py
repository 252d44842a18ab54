"""Ledger URLs: SQLite paths made absolute and checked, passwords redacted for messages."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .. import errors


def sqlite_url(url: str, *, base: str | Path | None = None, create: bool = False, check: bool = False) -> str:
    """``url`` as ``sqlite:///ABSOLUTE/PATH``: ``sqlite:relative/path`` is relative to ``base``
    (the config file's directory; else the cwd). ``create`` makes missing directories and
    ``check`` (at config load) only looks: a directory that cannot hold the file is a
    `ConfigError` naming ``ledger``.

    ``sqlite:/x`` (one slash) is refused rather than guessed: RFC 8089 reads it as the
    absolute ``/x``, a newcomer as relative ``x``.
    """
    if "\x00" in url:
        raise errors.ConfigError("the ledger URL contains a NUL byte", key="ledger", value=redact(url))
    head, _, query = url.partition("?")
    rest = head.split(":", 1)[1]
    if rest.startswith("/") and not rest.startswith("//"):
        raise errors.ConfigError(
            f"ambiguous SQLite URL: write 'sqlite:///{rest.lstrip('/')}' for the absolute path "
            f"{rest} or 'sqlite:{rest.lstrip('/')}' for a path relative to the config file",
            key="ledger", value=redact(url))
    if rest in (":memory:", "///:memory:"):
        return "sqlite:///:memory:" + (f"?{query}" if query else "")
    if rest.startswith("///") and rest.strip("/"):
        path = "/" + rest.lstrip("/")            # absolute (a fourth slash tolerated)
    elif rest.startswith("/") or not rest:
        return url                               # a host, or no path: the store says what is wrong
    else:
        path = str(Path(base or ".").joinpath(rest).resolve())
    target = Path(path).parent
    try:
        if create:
            target.mkdir(parents=True, exist_ok=True)
            _writable_dir(target)
        elif check:
            _writable_dir(target)
    except OSError as exc:
        raise errors.ConfigError(f"cannot use {target} for the ledger: "
                                 f"{exc.strerror or exc}", key="ledger", value=redact(url)) from None
    return "sqlite:///" + path.lstrip("/") + (f"?{query}" if query else "")


def _writable_dir(path: Path) -> None:
    """``path``, or its nearest existing parent, is a directory this process may write in."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(13, f"{probe} is not writable", str(probe))


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = f"{parts.username}:***" if parts.username else "***"
    return parts._replace(netloc=f"{userinfo}@{netloc[-1]}").geturl()
