"""Settings is the whole config as typed objects, built in one pass that reports every error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.budgets import BudgetSpec
from unillm.config import Settings, load_settings
from unillm.profiles import ProviderSettings
from unillm.rules import Rule

THREE_SECTIONS = """
[providers.openai]
timeout = "soon"

[[budgets]]
name = "team"
limit_usd = -1

[[rules]]
name = "cheap"
when = { modle = "gpt-4o" }
use = "gpt-4o-mini"
"""


def test_three_mistakes_in_three_sections_are_one_error_naming_each_key_path(tmp_path: Path) -> None:
    path = tmp_path / "unillm.toml"
    path.write_text(THREE_SECTIONS)
    with pytest.raises(errors.ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 3 problems:"), text
    assert "  - providers.openai.timeout: Input should be a valid number" in text
    assert "  - budgets[0] ('team').limit_usd: Input should be greater than or equal to 0" in text
    assert '  - rules[0] ("cheap").when.modle: unknown key; did you mean \'model\'?' in text
    keys = sorted(p.key for p in info.value.problems)
    assert keys == ["budgets[0] ('team').limit_usd", "providers.openai.timeout", 'rules[0] ("cheap").when.modle']
    assert all(p.file == str(path) for p in info.value.problems)


def test_collections_are_typed_objects(tmp_path: Path) -> None:
    path = tmp_path / "unillm.toml"
    path.write_text('[providers.openai]\ntimeout = 5\n\n[[budgets]]\nname = "b"\nlimit_usd = 1.10\n\n'
                    '[[rules]]\nname = "r"\nmax_tokens = 10\n')
    s = load_settings(path)
    assert isinstance(s.providers["openai"], ProviderSettings) and s.providers["openai"].timeout == 5
    assert "anthropic" in s.providers          # every bundled profile, resolved
    [budget] = s.budgets
    assert isinstance(budget, BudgetSpec) and budget.limit_usd == Decimal("1.10")
    [rule] = s.rules
    assert isinstance(rule, Rule) and rule.max_tokens == 10


def test_client_from_settings_keeps_the_objects_and_merges_provider_overrides() -> None:
    base = load_settings(None, providers={"openai": {"timeout": 5, "api_key": "sk-base"}},
                         rules=[{"name": "r", "max_tokens": 10}])
    client = Client(base, ledger="off", providers={"openai": {"max_retries": 0}})
    openai = client.providers["openai"]
    assert (openai.timeout, openai.max_retries, openai.resolved_api_key()) == (5, 0, "sk-base")
    assert client.settings.rules[0] is base.rules[0]
    with pytest.raises(errors.ConfigError) as info:
        Client(base, providers={"openai": {"timout": 1}}, budgets=[{"name": "x"}])
    assert [p.key for p in info.value.problems] == ["providers.openai.timout", "budgets[0] ('x')"]


@pytest.mark.parametrize("providers, key, words", [
    ({"openai": [None]}, "providers.openai", "must be a table of settings"),
    ({"opnai": {"timeout": 1}}, "providers.opnai", "did you mean openai"),
    ({"openai": {"base_ur": "x"}}, "providers.openai.base_ur", "did you mean 'base_url'"),
])
def test_a_bad_provider_table_names_its_key(providers, key, words) -> None:
    with pytest.raises(errors.ConfigError) as info:
        Client(providers=providers)
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_duplicate_names_are_reported_with_the_rest() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_settings(None, rules=[{"name": "a", "use": "x"}, {"name": "a", "use": "y"}],
                      budgets=[{"name": "b", "limit_usd": 1}, {"name": "b", "limit_usd": 2}])
    text = str(info.value)
    assert 'rules[1] ("a").name: duplicate rule name; rules[0] ("a") already uses it' in text
    assert "budgets[1] ('b').name: duplicate budget name; budgets[0] ('b') already uses it" in text


def test_a_settings_dump_never_carries_a_credential_header() -> None:
    s = Settings(providers={"openai": {"headers": {"Authorization": "Bearer sk-secret", "X-Team": "a"}}})
    assert "sk-secret" not in repr(s.model_dump()) and "sk-secret" not in s.model_dump_json()
    assert s.model_dump()["providers"]["openai"]["headers"]["X-Team"] == "a"
    assert s.providers["openai"].headers["Authorization"] == "Bearer sk-secret"
