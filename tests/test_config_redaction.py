"""A value under a secret-named config key is never echoed in an error; other values are.

"Secret-named" means a whole word of the key's name (``api_key``, ``session_token``), not a
substring: ``prompt_tokens_below`` and ``keywords_any`` are ordinary keys whose bad value the
user needs to see, in unillm.toml exactly as over the admin API."""

import pytest

from unillm.config import load_settings
from unillm.errors import ConfigError


@pytest.mark.parametrize("toml, key, shown", [
    ('[providers.openai]\napi_key = ["sk-secret-123456"]\n', "providers.openai.api_key", "'<redacted>'"),
    ('[providers.openai]\napi_key_env = ["OPENAI_KEY_X"]\n', "providers.openai.api_key_env", "['OPENAI_KEY_X']"),
    ('[[rules]]\nname = "r"\nwhen = { prompt_tokens_below = "abc" }\nuse = "gpt-4o-mini"\n',
     'rules[0] ("r").when.prompt_tokens_below', "'abc'"),
    ('[[rules]]\nname = "key rotation"\nwhen = { keywords_any = "abc" }\nuse = "gpt-4o-mini"\n',
     'rules[0] ("key rotation").when.keywords_any', "'abc'"),
])
def test_only_secret_named_values_are_redacted(tmp_path, toml, key, shown):
    path = tmp_path / "unillm.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert f"{key}: " in str(exc.value) and str(exc.value).endswith(f"(got {shown})"), str(exc.value)
    assert "sk-secret-123456" not in str(exc.value) and "sk-secret-123456" not in repr(exc.value.value)
