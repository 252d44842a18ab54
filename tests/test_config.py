"""unillm.toml is validated once, at load, and every mistake is reported in one pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.config import Settings, load_settings

THREE_MISTAKES = """
cachee = "memory"
timezone = "Europe/Pariss"

[[budgets]]
name = "monthly"
limit_usd = 10
perod = "monthly"

[[rules]]
name = "cheap"
when = { model = "gpt-4o" }
usee = "gpt-4o-mini"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "unillm.toml"
    path.write_text(text)
    return path


def test_a_file_with_several_mistakes_lists_them_all_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_MISTAKES)
    with pytest.raises(errors.ConfigError) as info:
        Client.from_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 4 problems")
    assert "cachee: unknown key; did you mean 'cache'?" in text
    assert "timezone: unknown timezone; did you mean 'Europe/Paris'?" in text
    assert "budgets[0] ('monthly').perod: unknown key; did you mean 'period'?" in text
    assert 'rules[0] ("cheap").usee: unknown key; did you mean \'use\'?' in text
    assert len(info.value.problems) == 4   # one pass: one ConfigError per mistake


@pytest.mark.parametrize("settings, key, words", [
    ({"drop_params": "yes"}, "drop_params", 'must be true, false or "warn"'),
    ({"cache_sampled": "no"}, "cache_sampled", "valid boolean"),
    ({"log_content": 1}, "log_content", "valid boolean"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
    ({"alerts": {"webhook": "not a url"}}, "alerts.webhook", "http:// or https:// URL"),
    ({"alerts": {"webhook": "ftp://hooks.example/x"}}, "alerts.webhook", "http:// or https:// URL"),
    ({"alerts": {"webhook": "https://"}}, "alerts.webhook", "with a host"),
    ({"cache": "/tmp/x"}, "cache", "did you mean 'disk:///tmp/x'"),
    ({"cache": "dsik:///tmp/x"}, "cache", "did you mean 'disk'"),
    ({"cache": "disk:///etc/passwd/cache"}, "cache", "not a directory"),
    ({"ledger": "sqlite:/relative.db"}, "ledger", "ambiguous SQLite URL"),
    ({"ledger": "sqlite:///etc/passwd/x/ledger.db"}, "ledger", "Not a directory"),
    ({"ledger": "sqlite:///tmp/a\x00b.db"}, "ledger", "NUL byte"),
    ({"retry": {"intial": 1}}, "retry.intial", "did you mean 'initial'"),
    ({"server": {"max_body_byte": 1}}, "server.max_body_byte", "did you mean 'max_body_bytes'"),
    ({"providers": {"openai": {"base_ur": "x"}}}, "providers.openai.base_ur", "did you mean 'base_url'"),
    ({"pricing": ""}, "pricing", "price file"),
])
def test_every_setting_is_checked_at_load(settings, key, words) -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_settings(None, deep=True, **settings)
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_an_unwritable_ledger_directory_names_ledger(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(errors.ConfigError) as info:
        load_settings(None, ledger=f"sqlite:///{locked}/sub/ledger.db")
    assert info.value.key == "ledger"


def test_a_rule_target_is_resolved_and_priced_at_load_naming_the_rule() -> None:
    with pytest.raises(errors.ConfigError) as info:
        Client(ledger="off", rules=[{"name": "cheap", "when": {"model": "gpt-4o"}, "use": "gpt-4o-minii"}])
    assert info.value.key == 'rules[0] ("cheap").use' and "gpt-4o-mini" in str(info.value)
    with pytest.raises(errors.ConfigError, match="rules\\[0\\]"):
        Client(ledger="off", rules=[{"name": "x", "use": "nosuchvendor/model"}])
    Client(ledger="off", rules=[{"name": "ok", "use": "gpt-4o-mini"}])    # a known, priced target loads


def test_client_with_a_settings_object_revalidates_its_overrides() -> None:
    base = Settings()
    for bad in ({"on_missing_price": "bogus"}, {"no_such_key": 1}, {"providers": {"openai": [None]}},
                {"drop_params": "yes"}):
        with pytest.raises(errors.ConfigError):
            Client(base, **bad)
    assert Client(base, drop_params=True).settings.drop_params is True


def test_sqlite_urls_absolute_relative_to_the_config_file_and_directories_made(tmp_path: Path) -> None:
    conf = tmp_path / "project" / "unillm.toml"
    conf.parent.mkdir()
    conf.write_text('ledger = "sqlite:data/ledger.db"\n')
    client = Client.from_config(conf)
    client.ledger.add(_row())
    assert (tmp_path / "project" / "data" / "ledger.db").exists()   # relative to the file, dir created
    client.close()
    deep = tmp_path / "a" / "b" / "ledger.db"
    absolute = Client(ledger=f"sqlite:///{deep}")
    absolute.ledger.add(_row())
    assert deep.exists()
    absolute.close()


def test_single_slash_sqlite_url_never_creates_a_file_at_the_root() -> None:
    from unillm.ledger import open_store
    with pytest.raises(errors.ConfigError) as info:
        open_store("sqlite:/relative.db")
    assert "sqlite:///relative.db" in str(info.value) and "sqlite:relative.db" in str(info.value)
    assert not Path("/relative.db").exists()


def _row():
    from decimal import Decimal

    from unillm.ledger import CallRecord
    from unillm.types import Cost, Usage
    return CallRecord.from_parts(provider="openai", model="gpt-4o", usage=Usage(input_tokens=1),
                                 cost=Cost(input_usd=Decimal("0.000001")))


def test_a_ledger_directory_that_cannot_be_created_is_a_config_error_naming_ledger() -> None:
    from unillm.ledger import open_store
    with pytest.raises(errors.ConfigError) as info:   # /proc refuses new directories, even to root
        open_store("sqlite:///proc/unillm-no-such/ledger.db")
    assert info.value.key == "ledger" and "/proc/unillm-no-such" in str(info.value)


def test_a_ledger_that_cannot_be_opened_names_the_config_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = write(tmp_path, 'ledger = "sqlite:data/ledger.db"\n')
    client = Client.from_config(path)
    blocker.rename(tmp_path / "data")          # the directory became a file after load
    with pytest.raises(errors.ConfigError) as info:
        client.ledger
    assert info.value.file == str(path) and info.value.key == "ledger"
    with pytest.raises(errors.ConfigError, match="cache_namespace"):
        load_settings(None, cache_namespace=" ")
