"""The data unillm speaks: requests in, OpenAI-shaped responses and chunks out.

Requests are validated here, once, before anything touches the network. Responses
keep OpenAI's shape (``choices[0].message.content``, ``usage.prompt_tokens``) and
add what unillm knows: ``provider``, ``cost``, ``cached``, ``rule``, ``ledger_id``.

Usage is stored as non-overlapping billing buckets; OpenAI's fields are derived
from them, so a cached token can never be counted (or charged) twice.
"""

from __future__ import annotations

import json
import math
import threading
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)

from . import errors

Role = Literal["system", "developer", "user", "assistant", "tool"]
UsageSource = Literal["provider", "reported", "tiktoken", "estimate"]  # reported: by the caller, not the vendor

_FORBID = ConfigDict(extra="forbid")


class _Model(BaseModel):
    """Validators are built on first use, not at import: `import unillm` stays cheap."""

    model_config = ConfigDict(defer_build=True)


_built = False
_build_lock = threading.Lock()


def build_models() -> None:
    """Build every model of this module once, under one lock, before the first request.

    pydantic's deferred build is not thread-safe: threads making a process's first calls
    at once could validate against a model another thread is rebuilding and fail with
    "'Message' has no attribute '__pydantic_core_schema__'" (pydantic/pydantic#13419, seen
    here in the 8-process budget stress test). Cheap after the first call: one global read.
    """
    global _built
    with _build_lock:
        if _built:
            return
        pending = list(_Model.__subclasses__())
        while pending:
            model = pending.pop()
            pending.extend(model.__subclasses__())
            if model.__module__ == __name__:
                model.model_rebuild()
        _built = True


# ── request ──────────────────────────────────────────────────────────────────

class ImageURL(_Model):
    model_config = _FORBID
    url: str  # http(s) URL or a data: URL with base64 content
    detail: Literal["auto", "low", "high"] | None = None


class CacheControl(_Model):
    """Anthropic's prompt-caching marker; vendors that cache implicitly ignore it (`unillm.parts`)."""

    model_config = _FORBID
    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None


class TextPart(_Model):
    model_config = _FORBID
    type: Literal["text"] = "text"
    text: str
    cache_control: CacheControl | None = None


class ImagePart(_Model):
    model_config = _FORBID
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL
    cache_control: CacheControl | None = None


class FileRef(_Model):
    model_config = _FORBID
    file_data: str | None = None   # a data: URL (base64), as OpenAI defines it
    file_id: str | None = None     # a vendor's uploaded-file id (OpenAI's Files API)
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileRef:
        if (self.file_data is None) == (self.file_id is None):
            raise ValueError("a file part needs exactly one of 'file_data' (a data: URL) or 'file_id'")
        return self


class FilePart(_Model):
    """A file (PDF, text) in OpenAI's shape: ``{"type": "file", "file": {"file_data": ...}}``."""

    model_config = _FORBID
    type: Literal["file"] = "file"
    file: FileRef
    cache_control: CacheControl | None = None


class InputAudio(_Model):
    model_config = _FORBID
    data: str                      # base64
    format: Literal["wav", "mp3"]


class AudioPart(_Model):
    model_config = _FORBID
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


ContentPart = TextPart | ImagePart | FilePart | AudioPart


class FunctionCall(_Model):
    name: str
    arguments: str = "{}"  # JSON text, as OpenAI sends it

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments or "{}")


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Model):
    """One chat message in OpenAI's format."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        if self.role != "assistant" and self.tool_calls:
            raise ValueError("only 'assistant' messages may carry 'tool_calls'")
        if (self.content is None or self.content == "" or self.content == []) and not (
                self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role!r} message needs non-empty 'content'")
        return self

    def text(self) -> str:
        """The message's text, parts joined; images contribute nothing."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)


class FunctionDef(_Model):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Model):
    model_config = _FORBID
    type: Literal["function"] = "function"
    function: FunctionDef
    cache_control: CacheControl | None = None  # Anthropic: cache the tool definitions up to here


ToolChoice = Literal["auto", "none", "required"] | dict[str, Any]


class JSONSchemaFormat(_Model):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None

    model_config = ConfigDict(populate_by_name=True)


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format type 'json_schema' needs a 'json_schema' object")
        return self


#: the keyword arguments ``Client.chat`` maps onto the request (everything else is an error)
REQUEST_PARAMS = frozenset({
    "tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens", "stop",
    "seed", "frequency_penalty", "presence_penalty", "top_k", "reasoning_effort",
    "parallel_tool_calls", "user", "drop_params", "extra",
})


#: ``drop_params``: "warn" (drop, warn once per parameter and provider), True (drop silently),
#: False (an `UnsupportedParamError`)
DropParams = StrictBool | Literal["warn"]

_WARNED_DROPS: set[tuple[str, str]] = set()


class DroppedParamWarning(UserWarning):
    """A parameter the vendor cannot honour was dropped (``drop_params = "warn"``)."""


class ChatRequest(_Model):
    """A validated chat request, vendor-neutral. Adapters turn it into SDK kwargs."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    top_k: int | None = Field(default=None, gt=0)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    drop_params: DropParams = False   # Client.chat passes the setting ("warn" by default)
    # vendor-specific keyword arguments passed to the SDK call (the contract: unillm.extra)
    extra: dict[str, Any] = Field(default_factory=dict)
    # the pydantic class the caller asked the answer to be parsed into, if any
    response_model: Any = Field(default=None, exclude=True)
    # the parameters an adapter dropped while converting this request (`unsupported`, read
    # as `dropped`) live in pydantic's private dict, made only when one is dropped: a declared
    # PrivateAttr made pydantic build that dict for every request (3.4 µs of a 5 µs model)

    def unsupported(self, provider: str, param: str, hint: str = "") -> None:
        """``provider`` cannot honour ``param``: an `UnsupportedParamError` when ``drop_params``
        is False; else the parameter is dropped, noted in `dropped` and, under "warn",
        warned about once per parameter and provider per process."""
        if self.drop_params is False:
            raise errors.UnsupportedParamError(provider, param, hint)
        dropped = self.dropped
        if param not in dropped:
            object.__setattr__(self, "__pydantic_private__", {"_dropped": (*dropped, param)})
        if self.drop_params == "warn" and (provider, param) not in _WARNED_DROPS:
            _WARNED_DROPS.add((provider, param))
            import warnings
            why = f" ({hint})" if hint else ""
            warnings.warn(f"{provider} does not support the parameter {param!r}{why}: dropped; set "
                          "drop_params = true to drop silently, false to make it an error",
                          DroppedParamWarning, stacklevel=2)

    @property
    def dropped(self) -> tuple[str, ...]:
        """The parameters dropped when this request was converted for its vendor."""
        private = self.__pydantic_private__
        return private.get("_dropped", ()) if private else ()

    def retargeted(self, model: str) -> ChatRequest:
        """The same request for another model (a fallback), with nothing dropped yet."""
        out = self.model_copy(update={"model": model})
        object.__setattr__(out, "__pydantic_private__", None)
        return out

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("extra")
    @classmethod
    def _extra_contract(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v:
            from .extra import check_extra
            check_extra(v)  # also when a ChatRequest is built directly
        return v

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_shape(cls, v: Any) -> Any:
        if isinstance(v, dict) and not (v.get("type") == "function" and isinstance(v.get("function"), dict)
                                        and "name" in v["function"]):
            raise ValueError("tool_choice dict must be {'type': 'function', 'function': {'name': ...}}")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _needs_tools(cls, v: Any, info: ValidationInfo) -> Any:
        # (tools that failed their own validation are not in info.data: reported already)
        if v not in (None, "none") and "tools" in info.data and not info.data["tools"]:
            raise ValueError("tool_choice given without tools")
        return v

    @field_validator("extra")
    @classmethod
    def _json_safe(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v)
        except (TypeError, ValueError) as exc:  # named "extra", not the request as a whole
            raise ValueError(f"extra parameters are not JSON-serialisable: {exc}") from None
        return v

    # convenience used by rules, tokens and budgets
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text()
        return ""

    def has_images(self) -> bool:
        return any(m.has_images() for m in self.messages)


def build_request(model: str, messages: Any, params: dict[str, Any], *,
                  drop_params: DropParams = "warn") -> ChatRequest:
    """``Client.chat``'s arguments -> a validated ChatRequest, or one precise InvalidRequestError."""
    if not _built:
        build_models()
    unknown = params.keys() - REQUEST_PARAMS
    if unknown:
        name = min(unknown)
        close = errors.did_you_mean(name, REQUEST_PARAMS)
        raise errors.InvalidRequestError(
            f"unknown parameter {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                                              "; pass vendor-specific parameters as extra={...}"),
            param=name)
    if params.get("extra"):
        from .extra import check_extra
        check_extra(params["extra"])  # names the key (the validator below only says "extra")
    params.setdefault("drop_params", drop_params)
    fmt = params.get("response_format")
    if isinstance(fmt, type) and issubclass(fmt, BaseModel):
        params["response_model"] = fmt
        params["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.__name__, "schema": fmt.model_json_schema()}}
    if not isinstance(messages, (list, str, bytes, dict)):
        try:
            messages = list(messages)
        except TypeError:
            raise errors.InvalidRequestError(
                f"messages must be a list of messages, not {type(messages).__name__}", param="messages") from None
    try:
        return ChatRequest(model=model, messages=messages, **params)
    except ValidationError as exc:
        errs = exc.errors()
        param = ".".join(str(p) for p in errs[0]["loc"]) if errs else None
        raise errors.InvalidRequestError(describe_errors(exc), param=param) from None


def describe_errors(exc: Any) -> str:
    """A pydantic ValidationError as one line per problem: where (messages.1.content) and what."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not str(p).endswith("Part"))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 5
    return "invalid request: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


# ── usage and cost ───────────────────────────────────────────────────────────

class PromptTokensDetails(_Model):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class CompletionTokensDetails(_Model):
    reasoning_tokens: int = 0


class Usage(_Model):
    """Token usage in non-overlapping billing buckets.

    ``input_tokens`` + ``cache_read_tokens`` + ``cache_write_tokens`` is the whole
    prompt; ``output_tokens`` includes ``reasoning_tokens``, and
    ``cache_write_tokens`` includes ``cache_write_1h_tokens``. OpenAI's field names
    (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, the ``*_details``)
    are derived from the buckets. ``source`` says where the numbers came from:
    the vendor, tiktoken, or a heuristic estimate. When the buckets came from
    different places (a cut stream: the vendor's prompt figures, output counted
    locally), ``sources`` names each bucket's origin and ``source`` is the least
    exact of them. Usage the vendor reported impossibly is built by
    `vendor_usage` unvalidated, as reported, with ``problem`` saying what is wrong.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)        # uncached input
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    #: the part of cache_write_tokens written with a 1-hour TTL (Anthropic); billed at cache_write_1h
    cache_write_1h_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)       # reasoning included
    reasoning_tokens: int = Field(default=0, ge=0)    # part of output_tokens
    source: UsageSource = "provider"
    #: bucket name -> where its number came from; empty when every bucket came from ``source``
    sources: dict[str, UsageSource] = Field(default_factory=dict)
    #: why the vendor's figures cannot be right (they are then kept as reported, unvalidated)
    problem: str | None = None

    @model_validator(mode="after")
    def _parts_within_wholes(self) -> Usage:
        if self.problem:  # the vendor's impossible figures, kept as reported (see vendor_usage)
            return self
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(f"cache_write_1h_tokens ({self.cache_write_1h_tokens}) are part of "
                             f"cache_write_tokens ({self.cache_write_tokens}) and cannot exceed them")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(f"reasoning_tokens ({self.reasoning_tokens}) are part of "
                             f"output_tokens ({self.output_tokens}) and cannot exceed them")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_extras(self, handler: Any) -> Any:
        """``sources`` and ``problem`` appear in dumps only when they say something, so a
        usage's JSON (cache entries, logs) is what it was before they existed."""
        data = handler(self)
        if isinstance(data, dict):
            if not self.sources:
                data.pop("sources", None)
            if self.problem is None:
                data.pop("problem", None)
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completion_tokens(self) -> int:
        return self.output_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def prompt_tokens_details(self) -> PromptTokensDetails:
        return PromptTokensDetails(cached_tokens=self.cache_read_tokens,
                                   cache_write_tokens=self.cache_write_tokens)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completion_tokens_details(self) -> CompletionTokensDetails:
        return CompletionTokensDetails(reasoning_tokens=self.reasoning_tokens)


#: the token buckets of a `Usage`, prompt side then output side
PROMPT_BUCKETS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
OUTPUT_BUCKETS = ("output_tokens", "reasoning_tokens")
BUCKETS = PROMPT_BUCKETS + OUTPUT_BUCKETS
ALL_BUCKETS = frozenset(BUCKETS)


def whole_usage(usage: Usage | None) -> tuple[Usage | None, frozenset[str]]:
    """A stream state's ``reported()`` where the vendor's usage, once it has arrived, is its
    figure for every bucket of the call; before it, nothing is reported."""
    return usage, ALL_BUCKETS if usage is not None else frozenset()


def vendor_usage(*, prompt: Any = None, input: Any = None, cache_read: Any = None,  # noqa: A002 - a vendor's name
                 cache_write: Any = None, cache_write_1h: Any = None, output: Any = None,
                 reasoning: Any = None, reasoning_in_output: bool = True) -> Usage:
    """The one boundary where a vendor's token counts become a `Usage`; every converter calls it.

    ``prompt`` is a prompt total that includes cache reads and writes (OpenAI, Gemini);
    ``input`` is uncached input (Anthropic, Cohere) or, beside ``prompt``, input counted
    outside it (Gemini's tool-use prompt). ``output`` includes ``reasoning`` unless
    ``reasoning_in_output`` is False. None means the vendor did not report that count.

    Every count must be a whole, non-negative number (``5.0`` is 5) and no part may exceed
    its whole (cache reads + writes <= prompt, 1-hour writes <= writes, reasoning <=
    output). Nothing is clamped, for any vendor: impossible figures come back unvalidated,
    as reported (a negative stays negative, a fraction is rounded up to the next whole
    token) with ``problem`` naming each fault; the Client records them on an ``error``
    row and raises `unillm.errors.UsageError` carrying the answer.
    """
    problems: list[str] = []
    p, i = _count("prompt", prompt, problems), _count("input", input, problems)
    cr, cw = _count("cache_read", cache_read, problems), _count("cache_write", cache_write, problems)
    cw1h = _count("cache_write_1h", cache_write_1h, problems)
    out, rsn = _count("output", output, problems), _count("reasoning", reasoning, problems)
    if prompt is not None:
        if cr + cw > p:
            problems.append(f"cache reads ({cr}) and writes ({cw}) exceed the prompt ({p})")
        i += p - cr - cw
    if not reasoning_in_output:
        out += rsn
    if rsn > out:
        problems.append(f"reasoning ({rsn}) exceeds output ({out})")
    if cw1h > cw:
        problems.append(f"1-hour cache writes ({cw1h}) exceed all cache writes ({cw})")
    buckets: dict[str, Any] = {"input_tokens": i, "cache_read_tokens": cr, "cache_write_tokens": cw,
                               "cache_write_1h_tokens": cw1h, "output_tokens": out, "reasoning_tokens": rsn}
    if problems:
        return Usage.model_construct(**buckets, source="provider", sources={},
                                     problem="impossible usage from the vendor: " + "; ".join(problems))
    return Usage(**buckets)


def _count(name: str, value: Any, problems: list[str]) -> int:
    """One reported count as an int; what is wrong with it goes to ``problems``."""
    if value is None:
        return 0
    if type(value) is int:  # the common case
        if value < 0:
            problems.append(f"{name} is negative ({value})")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        problems.append(f"{name} is not a number ({value!r})")
        return 0
    if not math.isfinite(value):
        problems.append(f"{name} is not finite ({value})")
        return 0
    whole = value == int(value)
    if whole:
        value = int(value)
    if value < 0:
        problems.append(f"{name} is negative ({value})")
    if not whole:
        problems.append(f"{name} is fractional ({value})")
        ceiled: int = math.ceil(value)
        return ceiled
    return int(value)


class Cost(_Model):
    """What a call cost, itemized, in exact decimal USD."""

    model_config = ConfigDict(frozen=True)

    input_usd: Decimal = Decimal(0)        # uncached input
    cache_read_usd: Decimal = Decimal(0)
    cache_write_usd: Decimal = Decimal(0)
    output_usd: Decimal = Decimal(0)       # reasoning included
    other_usd: Decimal = Decimal(0)        # per-call, per-image, ... charges
    tier: str | None = None                # e.g. "above_prompt_tokens=200000"
    price_version: str | None = None       # which price entry (file + since) was used
    currency: Literal["USD"] = "USD"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_usd(self) -> Decimal:
        return self.input_usd + self.cache_read_usd + self.cache_write_usd + self.output_usd + self.other_usd


# ── response ─────────────────────────────────────────────────────────────────

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class ResponseMessage(_Model):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    parsed: Any = Field(default=None, exclude=True)  # set when a response_model was given


class Choice(_Model):
    index: int = 0
    message: ResponseMessage
    finish_reason: FinishReason | None = None


class ChatResponse(_Model):
    """An OpenAI-shaped chat completion, plus what unillm knows about the call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str                      # the model that answered, as the vendor named it
    choices: list[Choice]
    usage: Usage | None = None
    provider: str
    cost: Cost | None = None
    cached: bool = False
    rule: str | None = None
    requested_model: str | None = None
    ledger_id: str | None = None
    # the vendor answered with another model than the one sent (not a dated snapshot of it):
    # the call is priced as the reported model; ``sent_model`` is the one unillm asked for
    model_mismatch: bool = False
    sent_model: str | None = None
    #: the ``max_tokens`` a budget injected (the request had none) when it is below the
    #: model's documented maximum output, or the maximum is unknown; None otherwise
    capped: int | None = None
    #: what the response cache did: hit, miss, stored, skipped:<reason>; None = no cache configured
    cache_status: str | None = None
    #: parameters the vendor cannot honour, dropped under ``drop_params`` ("warn" or true)
    dropped_params: tuple[str, ...] = ()

    @property
    def content(self) -> str | None:
        """Shortcut for ``choices[0].message.content``."""
        return self.choices[0].message.content if self.choices else None


class ToolCallDelta(_Model):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] | None = None  # {"name": ..., "arguments": partial JSON}


class Delta(_Model):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(_Model):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: FinishReason | None = None


class StreamChunk(_Model):
    """One OpenAI-shaped streaming chunk. The last chunk carries ``usage`` when known."""

    id: str = ""
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    provider: str = ""
