"""The cloud variants' typed settings: each key belongs to its protocol, and a bad value is one
ConfigError naming the file, the key and what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.config import load_settings


def _error(tmp_path: Path, table: str) -> errors.ConfigError:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(table)
    with pytest.raises(errors.ConfigError) as info:
        load_settings(cfg)
    assert str(cfg) in str(info.value)
    return info.value


def test_a_cloud_config_loads_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('[providers.azure-eastus]\nadapter = "azure"\nbase_url = "https://r.openai.azure.com"\n'
                   'deployment = "gpt-4o-prod"\napi_version = "2025-04-01-preview"\n'
                   '[providers.bedrock]\nregion = "eu-west-3"\naws_profile = "prod"\n'
                   '[providers.vertex-anthropic]\nproject = "acme-prod-42"\nlocation = "us-east5"\n')
    s = load_settings(cfg)
    az = s.providers["azure-eastus"]
    assert (az.adapter, az.deployment, az.api_version) == ("azure", "gpt-4o-prod", "2025-04-01-preview")
    assert (s.providers["bedrock"].region, s.providers["bedrock"].aws_profile) == ("eu-west-3", "prod")
    assert s.providers["vertex-anthropic"].location == "us-east5"


@pytest.mark.parametrize(("table", "key", "says"), [
    ('[providers.openai]\ndeployment = "x"\n', "providers.openai.deployment",
     "not a setting of adapter 'openai'; it is for adapter 'azure'"),
    ('[providers.anthropic]\nproject = "acme-prod-42"\n', "providers.anthropic.project",
     "'vertex-anthropic' or 'vertex-gemini'"),
    ('[providers.azure]\napi_version = "2024-10"\n', "providers.azure.api_version", '"2024-10-21"'),
    ('[providers.azure]\ndeployment = "a/b"\n', "providers.azure.deployment", "deployment name"),
    ('[providers.azure]\nentra = true\napi_key = "k"\n', "providers.azure.api_key", "one credential"),
    ('[providers.bedrock]\nregion = "useast1"\n', "providers.bedrock.region", '"us-east-1"'),
    ('[providers.bedrock]\naws_access_key_id = "AKIA"\n', "providers.bedrock.aws_secret_access_key",
     "pairs"),
    ('[providers.bedrock]\naws_profile = "p"\naws_access_key_id = "A"\naws_secret_access_key = "S"\n',
     "providers.bedrock.aws_profile", "not both"),
    ('[providers.bedrock]\napi_key = "k"\naws_profile = "p"\n', "providers.bedrock.api_key", "one credential"),
    ('[providers.vertex-gemini]\nproject = "Acme Prod"\n', "providers.vertex-gemini.project",
     "Google Cloud project id"),
    ('[providers.vertex-anthropic]\nlocation = "US East"\n', "providers.vertex-anthropic.location",
     '"us-east5"'),
    ('[providers.azure]\nentra = "yes"\n', "providers.azure.entra", "bool"),
])
def test_a_bad_cloud_setting_is_one_precise_error(tmp_path: Path, table: str, key: str, says: str) -> None:
    err = _error(tmp_path, table)
    assert key in str(err) and says in str(err), str(err)


def test_the_error_never_shows_a_secret_value(tmp_path: Path) -> None:
    err = _error(tmp_path, '[providers.bedrock]\naws_session_token = "SESSION-TOKEN-0123456789"\n')
    assert "providers.bedrock.aws_session_token" in str(err) and "SESSION-TOKEN-0123456789" not in str(err)


def test_python_only_settings_come_through_the_client(tmp_path: Path) -> None:
    c = Client(providers={"azure": {"base_url": "https://r.openai.azure.com", "token_provider": lambda: "t"}},
               ledger="off")
    assert callable(c.settings.providers["azure"].token_provider)
    with pytest.raises(errors.ConfigError, match="providers.openai.token_provider.*for adapter 'azure'") as info:
        Client(providers={"openai": {"token_provider": lambda: "t"}}, ledger="off")
    assert "token_provider" in str(info.value)


def test_entra_without_azure_identity_names_the_install(monkeypatch, fake) -> None:
    try:
        import azure.identity  # noqa: F401
        pytest.skip("azure-identity is installed")
    except ImportError:
        pass
    c = Client(providers={"azure": {"base_url": fake.url, "entra": True}}, ledger="off")
    with pytest.raises(errors.MissingDependencyError, match=r"unillm\[azure\]"):
        c.chat(model="azure/gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_pricing_show_and_check_price_a_cloud_provider_by_its_clouds_table(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unillm.cli import cli as main
    out = CliRunner().invoke(main, ["pricing", "show", "vertex-anthropic/claude-sonnet-4-5@20250929"])
    assert out.exit_code == 0, out.output
    assert "vertex-anthropic has no entry of its own; vertex-anthropic-global's entries price it" in out.output
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('[providers.azure-eastus]\nadapter = "azure"\nbase_url = "https://r.openai.azure.com"\n'
                   '[aliases]\nfast = "azure-eastus/gpt-4o-mini"\n')
    out = CliRunner().invoke(main, ["pricing", "check", "--config", str(cfg)])
    assert out.exit_code == 0 and "UNPRICED" not in out.output, out.output
