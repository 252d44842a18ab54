"""The adapter registry: every protocol declared once, third-party ones through entry points.

The example package (tests/example_adapter/) is a native adapter written outside unillm: one
folder plus its entry point. It is found the way an installed package is, by importlib.metadata
reading its ``*.dist-info`` on sys.path, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from unillm import Client, errors
from unillm._toml import load_toml
from unillm.adapters import registry
from unillm.profiles import build_settings
from unillm.testing import FakeProvider

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = Path(__file__).resolve().parent / "example_adapter"


def _run(script: str, *path: Path, env: dict[str, str] | None = None) -> Any:
    """``script`` in a fresh interpreter with ``path`` (then this tree) on sys.path; its JSON."""
    pythonpath = os.pathsep.join([*map(str, path), str(ROOT)])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         env={**os.environ, **(env or {}), "PYTHONPATH": pythonpath}, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# ── a native adapter outside unillm ──────────────────────────────────────────

SERVE_EXAMPLE = """
    import asyncio, json, os, sys, tempfile
    from unillm import Client, track
    from unillm.adapters import registry
    from unillm.testing import FakeProvider, Reply

    tmp = tempfile.mkdtemp()
    prices = os.path.join(tmp, "prices.toml")
    with open(prices, "w") as f:
        f.write('[acme."ex-1"]\\ninput = 3\\noutput = 15\\n')   # USD per million tokens
    out = {"names": registry.names()}
    with FakeProvider() as fake:
        client = Client(providers={"acme": {"adapter": "example", "base_url": fake.base_url("example"),
                                            "api_key": "k", "models": ["ex-*"]}},
                        pricing=prices, ledger="sqlite:///" + os.path.join(tmp, "ledger.db"))
        msgs = [{"role": "user", "content": "hello"}]
        fake.queue(Reply(text="hi there", usage={"input_tokens": 1000, "output_tokens": 200}))
        r = client.chat(model="ex-1", messages=msgs)
        out["chat"] = [r.provider, r.content, str(r.cost.input_usd), str(r.cost.output_usd), r.ledger_id]
        out["sent"] = fake.requests[-1].json
        out["auth"] = fake.requests[-1].headers.get("authorization")
        fake.queue(Reply(text="streamed words", usage={"input_tokens": 10, "output_tokens": 4}))
        s = client.chat(model="ex-1", messages=msgs, stream=True)
        out["stream"] = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
        body = {"id": "x", "model": "ex-1", "output": "o", "stop": "end", "meter": {"prompt": 7, "completion": 1}}
        rec = track(body, client=client)
        out["track"] = [rec.provider, rec.model, str(rec.total_usd)]
        out["try_tools"] = None
        try:
            client.chat(model="ex-1", messages=msgs, tools=[{"type": "function", "function": {"name": "f"}}],
                        drop_params=False)
        except Exception as exc:
            out["try_tools"] = [type(exc).__name__, getattr(exc, "param", None)]
        async def go():
            r = await client.achat(model="acme/ex-1", messages=msgs)
            out["rows"] = [[row.provider, row.model, str(row.total_usd)] for row in client.ledger.records()]
            await client.aclose()
            return r.content
        out["achat"] = asyncio.run(go())
    print(json.dumps(out))
"""


def test_a_native_adapter_is_one_folder_plus_its_entry_point() -> None:
    out = _run(SERVE_EXAMPLE, EXAMPLE)
    assert out["names"] == ["openai", "anthropic", "google", "cohere", "azure", "bedrock",
                            "vertex-anthropic", "vertex-gemini", "example"]
    provider, content, input_usd, output_usd, ledger_id = out["chat"]
    assert (provider, content) == ("acme", "hi there") and ledger_id
    assert Decimal(input_usd) == Decimal(output_usd) == Decimal("0.003")  # 1000 x $3/M, 200 x $15/M
    assert out["sent"] == {"model": "ex-1", "stream": False, "messages": [{"role": "user", "content": "hello"}]}
    assert out["auth"] == "Bearer k"
    assert out["stream"] == "streamed words" and out["achat"] == "Hello from FakeProvider."
    assert out["track"][:2] == ["acme", "ex-1"]                   # detected by the spec's detector
    assert Decimal(out["track"][2]) == Decimal("0.000036")         # 7 x $3/M + 1 x $15/M
    # chat, stream, track, the refused call (unpriced: nothing was sent), achat
    assert {tuple(r[:2]) for r in out["rows"]} == {("acme", "ex-1")}
    assert [r[2] if r[2] == "None" else Decimal(r[2]) for r in out["rows"][:4]] == [
        Decimal("0.006"), Decimal("0.00009"), Decimal("0.000036"), "None"]
    assert len(out["rows"]) == 5
    assert out["try_tools"] == ["UnsupportedParamError", "tools"]  # the spec's capabilities


def _broken_plugin(tmp_path: Path, value: str) -> Path:
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[unillm.adapters]\nbroken = {value}\n")
    return tmp_path


@pytest.mark.parametrize("value, expect", [
    ("no_such_module:SPEC", "cannot load entry point broken = 'no_such_module:SPEC'"),
    ("json:dumps", "must be an AdapterSpec with protocol='broken'"),
])
def test_a_broken_plugin_is_a_config_error_naming_its_entry_point(tmp_path: Path, value: str,
                                                                  expect: str) -> None:
    out = _run("""
        import json
        from unillm import Client, errors
        from unillm.adapters import registry
        names = registry.names()
        try:
            Client(providers={"acme": {"adapter": "broken", "base_url": "http://127.0.0.1:9"}}, ledger="off")
        except errors.ConfigError as exc:
            print(json.dumps({"names": names, "error": str(exc), "key": exc.key}))
    """, _broken_plugin(tmp_path, value))
    assert "broken" in out["names"]           # listed without being imported
    assert expect in out["error"] and out["key"].startswith("providers.acme")
    # ... and the built-in protocols still work beside it
    ok = _run("""
        import json
        from unillm import Client
        c = Client(providers={"openai": {"api_key": "k"}}, ledger="off")
        print(json.dumps({"adapter": type(c._adapter("openai")).__name__}))
    """, tmp_path)
    assert ok == {"adapter": "OpenAIAdapter"}


# ── profiles are checked against the registry ────────────────────────────────

def test_an_unknown_adapter_is_a_config_error_listing_the_registered_ones() -> None:
    with pytest.raises(errors.ConfigError) as info:
        Client(providers={"acme": {"adapter": "opnai", "base_url": "http://127.0.0.1:9"}}, ledger="off")
    msg = str(info.value)
    assert "providers.acme.adapter" in msg and "did you mean 'openai'?" in msg
    assert "registered: openai, anthropic, google, cohere" in msg


def test_a_profile_file_with_an_unknown_adapter_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('ledger = "off"\n[providers.acme]\nadapter = "antropic"\nbase_url = "http://127.0.0.1:9"\n')
    with pytest.raises(errors.ConfigError) as info:
        Client(config=cfg)
    assert str(cfg) in str(info.value) and "did you mean 'anthropic'?" in str(info.value)


def test_every_builtin_protocol_is_whole() -> None:
    """Each spec's references load and agree with one another and with pyproject's extras."""
    extras = load_toml(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
    with FakeProvider() as fake:
        served = {p.name for p in fake.protocols}
    for spec in registry.BUILTIN:
        assert spec.adapter_class().protocol == spec.protocol
        convert = spec.converter_module()
        assert callable(convert.from_response) and callable(convert.detect)
        assert spec.fake_protocol().name == spec.protocol and spec.protocol in served
        assert spec.extra in extras and spec.requirement == f"unillm[{spec.extra}]"
        assert spec.extra in extras["all"][0]
        # a cloud variant shares its vendor's SDK: that SDK's module is the native protocol's
        native = next(s for s in registry.BUILTIN if s.sdk_module == spec.sdk_module)
        assert registry.sdk_of(spec.sdk_module + ".types") is native


def test_a_missing_sdk_names_its_protocols_pip_requirement() -> None:
    from unillm.adapters.base import require
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'unillm\[google\]'") as info:
        require("google.genai.no_such_module")
    assert info.value.extra == "google"


# ── vendor differences are capabilities, not names ───────────────────────────

def test_max_completion_tokens_is_a_capability_not_the_name_openai(fake: FakeProvider) -> None:
    c = Client(providers={
        "azure-ish": {"adapter": "openai", "base_url": fake.base_url("openai"), "api_key": "k",
                      "capabilities": {"max_completion_tokens": ["o[0-9]*"]}},
        "groq": {"base_url": fake.base_url("openai"), "api_key": "k"}}, ledger="off", on_missing_price="record")
    c.chat(model="azure-ish/o3-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=64)
    assert fake.requests[-1].json["max_completion_tokens"] == 64
    c.chat(model="groq/o3-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=64)
    assert fake.requests[-1].json["max_tokens"] == 64
    assert c.providers["openai"].capabilities.max_completion_tokens == ["o[0-9]*", "gpt-5*"]


def test_openai_organization_is_a_capability_not_the_name_openai(fake: FakeProvider,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    c = Client(providers={
        "proxy": {"adapter": "openai", "base_url": fake.base_url("openai"), "api_key": "k",
                  "capabilities": {"openai_organization": True}},
        "groq": {"base_url": fake.base_url("openai"), "api_key": "k"}}, ledger="off", on_missing_price="record")
    c.chat(model="proxy/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].headers.get("openai-organization") == "org-123"
    c.chat(model="groq/llama-3.3-70b-versatile", messages=[{"role": "user", "content": "hi"}])
    assert "openai-organization" not in fake.requests[-1].headers


def test_a_protocols_capabilities_lie_under_the_profiles() -> None:
    s = build_settings({"vllm": {"capabilities": {"top_k": True}}})
    assert s["groq"].capabilities.top_k is False     # Chat Completions has none (the protocol's)
    assert s["vllm"].capabilities.top_k is True      # a profile may say its server has one
    assert s["google"].capabilities.top_k is True         # other protocols keep the default


# ── an OpenAI-compatible vendor is one TOML file ─────────────────────────────

def test_an_openai_compatible_vendor_is_one_toml_file(tmp_path: Path) -> None:
    """The wheel's layout (unillm/_data/providers) with one file added, and no code changed."""
    pkg = tmp_path / "site"
    shutil.copytree(ROOT / "unillm", pkg / "unillm", ignore=shutil.ignore_patterns("__pycache__"))
    data = pkg / "unillm" / "_data"
    shutil.copytree(ROOT / "providers", data / "providers")
    shutil.copy(ROOT / "pricing.toml", data / "pricing.toml")
    (data / "providers" / "acme.toml").write_text(
        'display_name = "Acme"\nadapter = "openai"\nbase_url = "https://api.acme.example/v1"\n'
        'api_key_env = "ACME_API_KEY"\nmodels = ["acme-*"]\n\n[capabilities]\nseed = false\n')
    prices = tmp_path / "prices.toml"
    prices.write_text('[acme."acme-large"]\ninput = 1\noutput = 2\n')
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import json, unillm
        from unillm import Client
        from unillm.testing import FakeProvider
        assert unillm.__file__.startswith({str(pkg)!r}), unillm.__file__
        with FakeProvider() as fake:
            c = Client(providers={{"acme": {{"base_url": fake.base_url("openai")}}}}, ledger="off",
                       pricing={str(prices)!r})
            r = c.chat(model="acme-large", messages=[{{"role": "user", "content": "hi"}}], seed=1,
                       drop_params=True)
            print(json.dumps([r.provider, str(r.cost.input_usd > 0), list(r.dropped_params),
                              fake.requests[-1].headers["authorization"]]))
    """)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(pkg), "ACME_API_KEY": "acme-key"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["acme", "True", ["seed"], "Bearer acme-key"]
