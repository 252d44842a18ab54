"""A newcomer's first hour (issue 15): every ``unillm`` command finds ./unillm.toml.

The session below is the README's, run as real processes in a project directory:
``unillm keys create`` -> ``unillm serve --config unillm.toml`` -> one call through the
openai SDK -> ``unillm ledger summary``, ``unillm report``, ``unillm cache stats``. It
must read and write only the files the config names; the default ledger and cache
under ``$UNILLM_HOME`` must never appear.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.servers import free_port, wait_ready
from unillm.cli import cli
from unillm.testing import FakeProvider, Reply

REPO = Path(__file__).resolve().parents[1]
MSG = [{"role": "user", "content": "2+2?"}]


def write_project(root: Path, fake: FakeProvider) -> Path:
    """A project directory whose unillm.toml keeps its ledger and cache inside it."""
    root.mkdir(parents=True, exist_ok=True)
    table = fake.providers("openai")["openai"]
    at = root.as_posix().lstrip("/")
    lines = [f"ledger = {json.dumps(f'sqlite:///{at}/ledger.db')}",
             f"cache = {json.dumps(f'disk:///{at}/cache')}", "cache_sampled = true", "",
             "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
             "max_retries = 0"]
    (root / "unillm.toml").write_text("\n".join(lines) + "\n")
    return root


def unillm(*args: str, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "unillm", *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("UNILLM_")}
    out.update(PYTHONPATH=str(REPO), UNILLM_HOME=str(tmp_path / "home"))
    return out


def test_the_readme_session_uses_only_the_configured_files(tmp_path: Path, env: dict[str, str]) -> None:
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    home = Path(env["UNILLM_HOME"])
    with FakeProvider() as fake:
        fake.queue(Reply(text="Four.", usage={"input_tokens": 10, "output_tokens": 2}))
        project = write_project(tmp_path / "project", fake)
        secret = unillm("keys", "create", "--user", "ann", "--project", "bot", cwd=project, env=env).stdout.strip()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "unillm", "serve", "--config", "unillm.toml", "--port", str(port)],
            cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", server)
            sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0)
            for _ in range(2):  # the second is answered by the configured cache
                answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)
                assert answer.choices[0].message.content == "Four."
        finally:
            server.terminate()
            _, said = server.communicate(timeout=30)
    assert f"ledger: sqlite:///{str(project).lstrip('/')}/ledger.db (ledger in unillm.toml)" in said
    assert len(fake.requests) == 1

    summary = json.loads(unillm("ledger", "summary", "--by", "user,status", "--format", "json",
                                cwd=project, env=env).stdout)
    assert {(r["user"], r["status"]): r["calls"] for r in summary} == {("ann", "ok"): 1, ("ann", "cache_hit"): 1}
    assert Decimal(sum(Decimal(r["cost_usd"]) for r in summary)) > 0
    unillm("report", "-o", "report.html", cwd=project, env=env)
    html = (project / "report.html").read_text()
    assert "2 calls" in html and "openai/gpt-4o-mini" in html
    stats = json.loads(unillm("cache", "stats", "--format", "json", cwd=project, env=env).stdout)
    assert stats["entries"] == 1 and stats["hits"] == 1 and stats["calls"] == 2
    assert stats["url"].endswith(f"{project.name}/cache")
    listed = unillm("keys", "list", "--format", "json", cwd=project, env=env).stdout
    assert [k["user"] for k in json.loads(listed)] == ["ann"]

    # nothing went to the defaults, and nothing outside the configured files was written
    assert not (home / "ledger.db").exists() and not (home / "cache").exists()
    made = {p.name for p in project.iterdir()}
    assert made <= {"unillm.toml", "ledger.db", "ledger.db-wal", "ledger.db-shm", "cache", "report.html"}


def test_unillm_config_from_the_environment_and_verbose_says_what_was_used(
        tmp_path: Path, env: dict[str, str]) -> None:
    with FakeProvider() as fake:
        project = write_project(tmp_path / "project", fake)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**env, "UNILLM_CONFIG": str(project / "unillm.toml")}
    made = unillm("keys", "create", "--user", "bo", "-v", cwd=elsewhere, env=env)
    assert f"config: {project / 'unillm.toml'} ($UNILLM_CONFIG)" in made.stderr
    assert (project / "ledger.db").exists()
    out = unillm("ledger", "summary", "-v", cwd=elsewhere, env=env)
    assert "no calls recorded" in out.stdout and "(ledger in " in out.stderr
    stats = unillm("cache", "stats", "-v", cwd=elsewhere, env=env)
    assert f"cache:  disk:///{str(project).lstrip('/')}/cache (cache in " in stats.stderr
    # --ledger and --cache win over the config
    other = f"sqlite:///{tmp_path}/other.db"
    unillm("keys", "create", "--ledger", other, cwd=elsewhere, env=env)
    out = unillm("ledger", "summary", "--ledger", other, "-v", cwd=elsewhere, env=env)
    assert f"ledger: {other} (--ledger)" in out.stderr
    assert not (Path(env["UNILLM_HOME"]) / "ledger.db").exists()


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    for args in (["ledger", "summary"], ["keys", "list"], ["cache", "stats"], ["report"],
                 ["rules", "lint"], ["budgets", "status"], ["pricing", "check"], ["serve"]):
        out = unillm(*args, "--config", "nope.toml", cwd=tmp_path, env=env, check=False)
        assert out.returncode == 1 and "nope.toml: config file not found (from --config)" in out.stderr, args
    out = unillm("ledger", "summary", cwd=tmp_path, env={**env, "UNILLM_CONFIG": "gone.toml"}, check=False)
    assert out.returncode == 1 and "gone.toml: config file not found (from $UNILLM_CONFIG)" in out.stderr


STATEFUL = [["ledger", "summary"], ["ledger", "export"], ["ledger", "tail"], ["ledger", "whatif"],
            ["ledger", "migrate"], ["cache", "stats"], ["cache", "clear"], ["cache", "prune"],
            ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["report"], ["serve"],
            ["budgets", "status"], ["rules", "explain"], ["rules", "lint"], ["pricing", "check"]]


@pytest.mark.parametrize("command", STATEFUL, ids=" ".join)
def test_every_stateful_command_documents_the_discovery_order(command: list[str]) -> None:
    out = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "--config PATH" in text and "$UNILLM_CONFIG, else ./unillm.toml" in text
    assert "-v, --verbose" in text
    if command[0] in ("ledger", "keys", "report", "serve", "budgets") and command[1:] != ["migrate"]:
        assert "the config's ledger, else $UNILLM_LEDGER" in text
    if command[0] in ("cache", "serve"):
        assert "the config's cache, else $UNILLM_CACHE" in text


# README commands that need something the test does not set up: a running process, a
# PostgreSQL server, files to import or compare
_NOT_HERE = ("unillm serve", "unillm ledger tail -f", "unillm ledger migrate", "unillm pricing import",
             "unillm pricing diff",
             # a key id made elsewhere, a hidden prompt: test_server_key_lifecycle.py, test_sealed_keys.py run them
             "unillm keys rotate", "unillm secrets set", "unillm secrets delete")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
             for line in block.splitlines()]
    return [line for line in lines if line.startswith("unillm ") and not line.startswith(_NOT_HERE)]


def test_the_readme_cli_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    from unillm import Client
    commands = readme_commands()
    assert any(c.startswith("unillm ledger whatif") for c in commands) and len(commands) >= 8
    with FakeProvider() as fake:
        fake.default = Reply(text="ok", usage={"input_tokens": 100, "output_tokens": 10})
        project = write_project(tmp_path / "project", fake)
        client = Client.from_config(project / "unillm.toml")
        client.chat(model="gpt-4o", messages=MSG, max_tokens=10, tags={"user": "ann"})
        client.close()
        monkeypatch.chdir(project)
        for command in commands:
            out = CliRunner().invoke(cli, shlex.split(command)[1:])
            assert out.exit_code == 0, (command, out.output)
    assert not (tmp_path / "unillm-home" / "ledger.db").exists()


def test_the_config_ledger_wins_over_the_environment_which_wins_over_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unillm.cli._common import State
    env_url, cfg_url = f"sqlite:///{tmp_path}/env.db", f"sqlite:///{tmp_path}/cfg.db"
    monkeypatch.setenv("UNILLM_LEDGER", env_url)
    monkeypatch.chdir(tmp_path)
    assert State().ledger_url == env_url and State().overrides() == {"ledger": env_url}
    (tmp_path / "unillm.toml").write_text(f'ledger = "{cfg_url}"\ncache = "memory"\n')
    state = State(verbose=True)
    assert state.ledger_url == cfg_url and state.overrides() == {}
    assert state.describe(cache=True) == [
        "config: unillm.toml (./unillm.toml in the working directory)",
        f"ledger: {cfg_url} (ledger in unillm.toml)", "cache:  memory (cache in unillm.toml)"]
    assert State(ledger_option="off").overrides() == {"ledger": "off"}
