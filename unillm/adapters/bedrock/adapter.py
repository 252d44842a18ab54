"""Anthropic's models on Amazon Bedrock through the official ``anthropic.AnthropicBedrock``.

The Messages body and its converter are `AnthropicAdapter`'s; the SDK's Bedrock client
moves the model into the path (``/model/{id}/invoke``, ``invoke-with-response-stream``),
adds ``anthropic_version``, signs every request with SigV4 (botocore) and decodes the
AWS event-stream binary frames of a stream (botocore too). That is why the ``bedrock`` extra
is ``anthropic[bedrock]`` (boto3 + botocore): the SDK's own path, whose signing and framing
AWS maintains, rather than a re-implementation of SigV4 here.

Credentials, one kind (`unillm.adapters.cloud` checks it): ``aws_access_key_id`` +
``aws_secret_access_key`` (+ ``aws_session_token``), an ``aws_profile``, or a Bedrock API key
(``api_key``, ``AWS_BEARER_TOKEN_BEDROCK``); none: boto3's default chain (env, files, roles).
``region`` defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, then the profile's.

``model`` is the Bedrock model id or inference profile (``anthropic.claude-...-v1:0``,
``us.anthropic...``, ``global.anthropic...``). The answer is recorded as that id: the body's
``model`` is Anthropic's name for it, not what Bedrock bills by.
"""

from __future__ import annotations

import sys
from typing import Any

from ... import errors
from ..anthropic.clouds import CloudAnthropicAdapter
from ..base import ErrorWhere, error_for_status, error_message, require

#: the HTTP status of each exception Bedrock sends inside a stream (an ``exception`` frame)
_STREAM_EXCEPTIONS = {"throttlingException": 429, "validationException": 400,
                      "modelStreamErrorException": 500, "internalServerException": 500,
                      "serviceUnavailableException": 503, "modelTimeoutException": 408}


class BedrockAdapter(CloudAnthropicAdapter):
    """``messages.create`` on ``AnthropicBedrock``."""

    protocol = "bedrock"

    def _make_client(self, async_: bool) -> Any:
        anthropic = require("anthropic")
        require("botocore")  # SigV4 and event-stream frames: fail now, with the install hint
        s = self.settings
        cls = anthropic.AsyncAnthropicBedrock if async_ else anthropic.AnthropicBedrock
        secret, token = s.aws_secret_access_key, s.aws_session_token
        key = s.resolved_api_key()
        aws = {"aws_access_key": s.aws_access_key_id, "aws_profile": s.aws_profile,
               "aws_secret_key": secret.get_secret_value() if secret else None,
               "aws_session_token": token.get_secret_value() if token else None}
        if key and not any(aws.values()):
            aws = {"api_key": key}
        try:
            return cls(**aws, aws_region=s.region, base_url=s.base_url, timeout=s.timeout, max_retries=0,
                       default_headers=s.headers or None)
        except ValueError as exc:  # no region found; or AWS keys beside AWS_BEARER_TOKEN_BEDROCK
            key = "region" if "region" in str(exc) else "api_key"
            raise errors.ConfigError(self.redactor().text(str(exc)),
                                     key=f"providers.{self.provider}.{key}") from None

    def _status_error(self, exc: Any, model: str) -> errors.ProviderError:
        status = _STREAM_EXCEPTIONS.get(exc.type or "") if exc.status_code < 400 else None
        if status is None:
            return super()._status_error(exc, model)
        return error_for_status(status, error_message(exc.body, exc.message), provider=self.provider,
                                model=model, body=exc.body)

    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        err = super().translate_error(exc, model)
        if err is not None:
            return err
        botocore = sys.modules.get("botocore.exceptions")
        where: ErrorWhere = {"provider": self.provider, "model": model}
        if botocore is not None and isinstance(exc, botocore.NoCredentialsError | botocore.PartialCredentialsError):
            return errors.AuthenticationError(f"no AWS credentials: {exc}", **where)
        if isinstance(exc, RuntimeError) and "AWS credentials" in str(exc):
            return errors.AuthenticationError(str(exc), **where)
        if botocore is not None and isinstance(exc, botocore.BotoCoreError):
            return errors.ProviderError(f"{type(exc).__name__}: {self.redactor().text(str(exc))}", **where)
        return None

