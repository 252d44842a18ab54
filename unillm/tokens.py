"""Token counting: the right tiktoken encoding per model, OpenAI's chat-format overhead.

Used twice per call: before it (prompt estimate for budgets and rules) and after it
when the vendor reported no usage (the completion text is counted). Counts are
``source="tiktoken"`` when the encoding is the model's own (OpenAI models), and
``"estimate"`` otherwise (another vendor's tokenizer approximated by a profile's
``tokenizer``, images, or the offline heuristic below).

Chat-format overhead follows OpenAI's cookbook "How to count tokens with tiktoken"
(openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb):
3 tokens per message, +1 per ``name``, +3 priming the reply, and the tool-schema
constants of its ``num_tokens_for_tools``.

Speed: a text is one ``len(encode_ordinary(text))`` in tiktoken's Rust core, with
the encoder loaded once per process. A conversation re-sends its history on every
turn and one call may count its prompt more than once (rules, budget, usage), so
message strings of 64 characters or more are counted once: `_CountCache` keeps
their counts by content digest (never the text), least recently used evicted.
bench/bench_tokens.py measures both.

Offline: tiktoken downloads encodings on first use. When no encoding can be
loaded (no network, empty ``TIKTOKEN_CACHE_DIR``, tiktoken not installed), counts
fall back to `heuristic_count`, the usage is marked ``estimate`` and one warning
is issued per process. ``TIKTOKEN_CACHE_DIR`` is read by tiktoken, never set here.
tiktoken is imported on first count, not at ``import unillm``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .parts import media_tokens
from .types import BUCKETS, OUTPUT_BUCKETS, PROMPT_BUCKETS, ChatRequest, Message, Tool, Usage, UsageSource

if TYPE_CHECKING:
    from .profiles import ProviderSettings

__all__ = [
    "TokenEstimateWarning",
    "encoding_for",
    "count_text",
    "count_messages",
    "count_tools",
    "image_tokens",
    "count_prompt",
    "count_usage",
    "prompt_usage_estimate",
    "heuristic_count",
    "CountCacheInfo",
    "count_cache_info",
    "count_cache_clear",
]

log = logging.getLogger("unillm.tokens")

O200K, CL100K = "o200k_base", "cl100k_base"

# OpenAI model families by encoding (tiktoken's own table agrees: see refs/tokens.json)
_O200K_MODELS = re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o1|o3|o4|chatgpt-|codex-)")
_CL100K_MODELS = re.compile(r"^(gpt-4|gpt-3\.5|gpt-35|text-embedding-)")

# chat format (cookbook num_tokens_from_messages): every current model uses 3 / 1
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# tool schemas (cookbook num_tokens_for_tools): func_init differs by model family
_TOOL_CONSTANTS = {
    O200K: {"func_init": 7, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
    CL100K: {"func_init": 10, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
}



class TokenEstimateWarning(UserWarning):
    """No tiktoken encoding could be loaded; token counts are heuristic estimates."""


# ── encodings ────────────────────────────────────────────────────────────────

def encoding_for(model: str, settings: ProviderSettings | None = None) -> tuple[str, bool]:
    """``(encoding name, exact)`` for ``model``.

    OpenAI families get their own encoding (exact). Other vendors get their
    profile's ``tokenizer`` (exact only if the profile says ``tokenizer_exact``).
    """
    bare = model.rsplit("/", 1)[-1].removeprefix("ft:")
    family = O200K if _O200K_MODELS.match(bare) else CL100K if _CL100K_MODELS.match(bare) else None
    if settings is None:
        return family or O200K, family is not None
    if family is not None:
        return family, settings.tokenizer_exact
    return settings.tokenizer, settings.tokenizer_exact


_warned = False
_warn_lock = threading.Lock()


def _warn_once(reason: str) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    msg = (f"unillm: no tiktoken encoding could be loaded ({reason}); token counts are "
           "heuristic estimates (see unillm.tokens.heuristic_count; they err high) and are "
           "marked 'estimate'. For exact counts install 'unillm[tokens]' and make the "
           "encodings available to tiktoken (network, or TIKTOKEN_CACHE_DIR).")
    log.debug(msg)
    warnings.warn(msg, TokenEstimateWarning, stacklevel=4)


@functools.lru_cache(maxsize=8)
def _encoder(name: str) -> Any:
    """The tiktoken encoding, loaded once per process; None when it cannot be loaded."""
    try:
        import tiktoken
    except ImportError:
        _warn_once("tiktoken is not installed")
        return None
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # noqa: BLE001 - offline download, unknown name, corrupt cache: all mean "no encoder"
        _warn_once(f"{name}: {type(exc).__name__}")
        return None


def encoder_available(encoding: str) -> bool:
    """True when ``encoding`` loads (first call may read tiktoken's cache)."""
    return _encoder(encoding) is not None


# ── counting ─────────────────────────────────────────────────────────────────

# A rough copy of cl100k/o200k's pre-tokenizer: text splits into these pieces first,
# and each piece is one or more tokens.
_PIECES = re.compile(r"""'(?:[sdmt]|ll|ve|re)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


_UTF8_WEIGHT = {1: 0.4, 2: 0.75, 3: 1.5, 4: 3.0}  # tokens per character, by UTF-8 length


def _piece_tokens(piece: str) -> int:
    if not piece.isascii():                 # Cyrillic ~0.5 a char, CJK ~1.3, emoji up to 3
        return math.ceil(sum(_UTF8_WEIGHT[len(ch.encode("utf-8"))] for ch in piece))
    core = piece.lstrip(" ")
    if not core.strip():                    # whitespace: a token a newline, runs of spaces merge
        return max(1, core.count("\n") + math.ceil(len(core.replace("\n", "")) / 8))
    if core.isdigit():
        return 1                            # 1-3 digits
    if core.isalpha():
        return math.ceil(len(piece) / 5)    # words: English averages 4-5.5 bytes a token
    return len(piece)                       # punctuation and symbols: one a character (space too)


def heuristic_count(text: str) -> int:
    """Tokens of ``text`` when no encoding is available; errs high (budgets rely on it).

    The text is split like tiktoken's pre-tokenizer (a piece is never merged with
    its neighbours, so each is at least one token), then each piece is weighed:
    1-3 digits are one token, an ASCII word one per 5 bytes (BPE averages 4-5.5
    bytes a token on English and code), punctuation one per character, a
    whitespace run one per newline plus one per 8 spaces, and non-ASCII text by
    its characters' UTF-8 length (2 bytes: 0.75, CJK: 1.5, emoji: 3; tiktoken
    gives about 0.5, 1.3 and up to 3). On prose, code, JSON and CJK text this
    over-counts by roughly 10-70% (checked against cl100k_base and o200k_base);
    it is an estimate and is marked as one.
    """
    return sum(_piece_tokens(m.group()) for m in _PIECES.finditer(text)) if text else 0


def count_text(text: str, encoding: str) -> int | None:
    """Tokens of ``text`` in ``encoding``; None when the encoding cannot be loaded.

    Special-token text (``<|endoftext|>``) counts as ordinary text, as the API does.
    """
    enc = _encoder(encoding)
    if enc is None:
        return None
    if not text:
        return 0
    return len(enc.encode_ordinary(text))


class CountCacheInfo(NamedTuple):
    """Statistics of the message-string count cache (like ``functools`` caches')."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class _CountCache:
    """Token counts of message strings keyed by (encoding, BLAKE2b digest of the text).

    Hashing is 15-20x cheaper than encoding; a digest (not the text) is kept so no
    prompt outlives its call in memory. Strings under ``min_chars`` are cheaper to
    encode than to hash and are not cached. Thread-safe.
    """

    def __init__(self, maxsize: int = 8192, min_chars: int = 64) -> None:
        self.maxsize, self.min_chars = maxsize, min_chars
        self._counts: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def count(self, text: str, encoding: str) -> int | None:
        """``count_text(text, encoding)``, from the cache when this text was counted before."""
        if len(text) < self.min_chars or _encoder(encoding) is None:
            return count_text(text, encoding)
        key = (encoding, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        with self._lock:
            n = self._counts.get(key)
            if n is not None:
                self._counts.move_to_end(key)
                self._hits += 1
                return n
            self._misses += 1
        n = len(_encoder(encoding).encode_ordinary(text))  # count_text, the encoder known to load
        with self._lock:
            self._counts[key] = n
            if len(self._counts) > self.maxsize:
                self._counts.popitem(last=False)
        return n

    def info(self) -> CountCacheInfo:
        with self._lock:
            return CountCacheInfo(self._hits, self._misses, self.maxsize, len(self._counts))

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._hits = self._misses = 0


_cache = _CountCache()


def count_cache_info() -> CountCacheInfo:
    """Hits, misses and size of the message-string count cache."""
    return _cache.info()


def count_cache_clear() -> None:
    """Forget every cached count (and the hit/miss statistics)."""
    _cache.clear()


def _count(text: str, encoding: str) -> int:
    n = _cache.count(text, encoding)
    return heuristic_count(text) if n is None else n


def _message_strings(m: Message) -> Iterable[str]:
    """The string values the cookbook encodes for one message (role, content, ...)."""
    yield m.role
    text = m.text()
    if text:
        yield text
    for call in m.tool_calls or ():
        yield call.id
        yield call.type
        yield call.function.name
        yield call.function.arguments
    if m.tool_call_id:
        yield m.tool_call_id


def image_tokens(messages: Iterable[Message], model: str, protocol: str | None = None) -> int:
    """Prompt tokens of the images in ``messages`` by the vendor's rule (see `unillm.images`):
    sized from ``data:`` URLs, the rule's maximum for URLs that are not fetched."""
    total = 0
    rule = None
    for m in messages:
        if isinstance(m.content, list):
            for part in m.content:
                image = getattr(part, "image_url", None)
                if image is not None:
                    from .images import image_size, rule_for
                    rule = rule or rule_for(model, protocol)
                    total += rule.tokens(image_size(image.url), image.detail)
    return total


def _messages_tokens(messages: list[Message], encoding: str) -> int:
    total = REPLY_PRIMING  # every reply is primed with <|start|>assistant<|message|>
    for m in messages:
        total += TOKENS_PER_MESSAGE
        for value in _message_strings(m):
            total += _count(value, encoding)
        if m.name:
            total += _count(m.name, encoding) + TOKENS_PER_NAME
    return total


def _strip_period(text: str) -> str:
    return text.removesuffix(".")


def _tools_tokens(tools: list[Tool], encoding: str) -> int:
    c = _TOOL_CONSTANTS.get(encoding, _TOOL_CONSTANTS[CL100K])
    total = 0
    for tool in tools:
        fn = tool.function
        total += c["func_init"] + _count(f"{fn.name}:{_strip_period(fn.description or '')}", encoding)
        props = (fn.parameters or {}).get("properties") or {}
        if props:
            total += c["prop_init"]
        for key, spec in props.items():
            spec = spec if isinstance(spec, dict) else {}
            total += c["prop_key"]
            if "enum" in spec:
                total += c["enum_init"]
                for item in spec["enum"]:
                    total += c["enum_item"] + _count(str(item), encoding)
            desc = _strip_period(str(spec.get("description", "")))
            total += _count(f"{key}:{spec.get('type', '')}:{desc}", encoding)
            total += _nested_tokens(spec, encoding)
    return total + (c["func_end"] if tools else 0)


def _nested_tokens(spec: dict[str, Any], encoding: str) -> int:
    """Nested schemas (objects, arrays) the cookbook does not cover: their JSON text."""
    extra = {k: v for k, v in spec.items() if k in ("properties", "items", "anyOf", "oneOf", "allOf")}
    return _count(json.dumps(extra, separators=(",", ":")), encoding) if extra else 0


def count_messages(messages: list[Message], tools: list[Tool] | None, encoding: str,
                   model: str = "gpt-4o") -> int | None:
    """Prompt tokens of a chat request per OpenAI's documented format (images by ``model``'s
    rule, OpenAI's protocol); None without encoder."""
    if _encoder(encoding) is None:
        return None
    return (_messages_tokens(messages, encoding) + _tools_tokens(list(tools or ()), encoding)
            + image_tokens(messages, model, "openai"))


def count_tools(tools: list[Tool] | None, encoding: str) -> int | None:
    """Prompt tokens the tool definitions add (cookbook ``num_tokens_for_tools``)."""
    if _encoder(encoding) is None:
        return None
    return _tools_tokens(list(tools or ()), encoding)


# ── entries for the Client ───────────────────────────────────────────────────

def _prompt(request: ChatRequest, encoding: str, exact: bool, model: str,
            protocol: str | None) -> tuple[int, bool]:
    """(tokens, exact) for the request's prompt; heuristic when no encoder. Images follow
    the vendor's rule and make the count an estimate (a bound, not the bill)."""
    exact = exact and _encoder(encoding) is not None
    n = _messages_tokens(request.messages, encoding) + _tools_tokens(list(request.tools or ()), encoding)
    media = media_tokens(request.messages, model, protocol)  # files and audio: an upper bound
    if media is not None:
        n, exact = n + media, False
    if request.has_images():
        return n + image_tokens(request.messages, model, protocol), False
    return n, exact


def count_prompt(request: ChatRequest, model: str,
                 settings: ProviderSettings | None = None) -> tuple[int, str]:
    """``(prompt tokens, source)`` for budget estimates and rules; source is tiktoken|estimate."""
    encoding, exact = encoding_for(model, settings)
    n, exact = _prompt(request, encoding, exact, model, settings.adapter if settings else None)
    return n, "tiktoken" if exact else "estimate"


def prompt_usage_estimate(request: ChatRequest, model: str,
                          settings: ProviderSettings | None = None) -> Usage:
    """The prompt as a `Usage` (all uncached input, no output) for worst-case pricing."""
    n, source = count_prompt(request, model, settings)
    return Usage(input_tokens=n, source=source)


def count_usage(request: ChatRequest, completion_text: str, model: str,
                settings: ProviderSettings | None = None, *, reported: Usage | None = None,
                buckets: Collection[str] = ()) -> Usage:
    """Usage counted locally where the vendor reported none.

    ``completion_text`` is everything the model produced: text plus tool-call
    names and arguments. All prompt tokens count as uncached input (a cache hit
    cannot be seen locally, so this errs high).

    ``reported`` is what the vendor had said when a stream ended early, ``buckets`` which of
    its figures are the vendor's for the call: those are kept as they are and only the rest
    is counted (the prompt side and the output side each come whole from one place, so a
    cached token is never counted twice). When the buckets' origins differ, ``sources``
    names each one and ``source`` is the least exact.
    """
    encoding, exact = encoding_for(model, settings)
    take_prompt = reported is not None and any(b in buckets for b in PROMPT_BUCKETS)
    take_output = reported is not None and any(b in buckets for b in OUTPUT_BUCKETS)
    values: dict[str, Any] = {}
    origin: dict[str, UsageSource] = {}
    if take_prompt:
        _take(values, origin, reported, PROMPT_BUCKETS)
    else:
        prompt, prompt_exact = _prompt(request, encoding, exact, model, settings.adapter if settings else None)
        values.update(input_tokens=prompt, cache_read_tokens=0, cache_write_tokens=0, cache_write_1h_tokens=0)
        origin.update(dict.fromkeys(PROMPT_BUCKETS, "tiktoken" if prompt_exact else "estimate"))
    if take_output:
        _take(values, origin, reported, OUTPUT_BUCKETS)
    else:
        out = count_text(completion_text, encoding)
        out_exact = exact and out is not None
        if out is None:
            out = heuristic_count(completion_text)
        values.update(output_tokens=out, reasoning_tokens=0)  # reasoning cannot be seen locally
        origin.update(dict.fromkeys(OUTPUT_BUCKETS, "tiktoken" if out_exact else "estimate"))
    if not (take_prompt or take_output):  # nothing from the vendor: one source, as before
        origin = dict.fromkeys(BUCKETS, "estimate" if "estimate" in origin.values() else "tiktoken")
    kinds = set(origin.values())
    order: tuple[UsageSource, ...] = ("estimate", "tiktoken", "reported", "provider")
    source = next(k for k in order if k in kinds)
    sources = origin if len(kinds) > 1 else {}
    problem = reported.problem if reported is not None and (take_prompt or take_output) else None
    if problem:
        return Usage.model_construct(**values, source=source, sources=sources, problem=problem)
    return Usage(**values, source=source, sources=sources)


def _take(values: dict[str, Any], origin: dict[str, UsageSource], reported: Usage | None,
          names: Iterable[str]) -> None:
    for name in names:
        values[name] = getattr(reported, name)
        origin[name] = "provider"
