"""The CLI's boundary: whatever arguments a user types, a command ends with its own exit code
and one message (a click usage error, or a user error naming what was wrong), never a
Python traceback. Hypothesis drives every command but ``serve`` (it would listen) with
arguments built from the command's own options and arbitrary values.
"""

from __future__ import annotations

import os
import tempfile

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unillm import errors
from unillm.cli import cli

SKIP = {("serve",)}


def _commands(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or (*path, name) in SKIP:
            continue
        if isinstance(cmd, click.Group):
            out += _commands(cmd, ctx, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


COMMANDS = _commands(cli, click.Context(cli))
VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["", "-1", "0", "1e999", "nan", "2026-13-40", "x=y",
                                                         "a,b", "../../etc/passwd", "\x00", "sqlite:/x",
                                                         "off", "--", "-"]),
                   st.integers(-10**12, 10**12).map(str))


@st.composite
def invocations(draw: st.DrawFn) -> list[str]:
    path, cmd = draw(st.sampled_from(COMMANDS))
    opts = [o for p in cmd.params if isinstance(p, click.Option) for o in p.opts]
    args: list[str] = list(path)
    for _ in range(draw(st.integers(0, 4))):
        if opts and draw(st.booleans()):
            args.append(draw(st.sampled_from(opts)))
        args.append(draw(VALUES))
    return args


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Everything a command may touch lives in a scratch directory."""
    d = tmp_path_factory.mktemp("cli")
    return {"UNILLM_HOME": str(d), "UNILLM_LEDGER": f"sqlite:///{d}/l.db", "UNILLM_CACHE": "off",
            "UNILLM_CONFIG": "", "HOME": str(d)}


def test_every_command_is_walked() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"ledger summary", "pricing show", "rules explain", "keys create", "budgets status"} <= names


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(args=invocations())
def test_no_command_escapes_with_a_traceback(home: dict[str, str], args: list[str]) -> None:
    runner = CliRunner()
    here = os.getcwd()
    with tempfile.TemporaryDirectory(dir=home["UNILLM_HOME"]) as scratch:
        os.chdir(scratch)  # relative paths a command writes land here
        try:
            result = runner.invoke(cli, args, env=home, catch_exceptions=True)
        finally:
            os.chdir(here)
    # main() turns a UnillmError into one clean line, as click does its own errors
    if result.exception is not None and not isinstance(result.exception, (SystemExit, errors.UnillmError)):
        raise AssertionError(f"unillm {' '.join(map(repr, args))} raised") from result.exception
    assert result.exit_code in (0, 1, 2) or isinstance(result.exception, errors.UnillmError), (args, result.output)
