"""What each converter's StreamState says the vendor has reported, event by event (pure, no I/O).

``reported()`` is what a cut stream is recorded from; ``complete`` is what tells a finished
stream from one that merely stopped.
"""

from __future__ import annotations

import pytest

from tests.conftest import ref
from unillm import errors
from unillm.adapters.anthropic.convert import StreamState as AnthropicState
from unillm.adapters.cohere.convert import StreamState as CohereState
from unillm.adapters.google.convert import StreamState as GoogleState
from unillm.adapters.openai.convert import StreamState as OpenAIState
from unillm.types import BUCKETS, PROMPT_BUCKETS


def data(events):
    return [e["data"] if isinstance(e, dict) and "data" in e else e for e in events]


def test_anthropic_prompt_counts_from_message_start_output_from_message_delta() -> None:
    state = AnthropicState("anthropic")
    events = data(ref("anthropic_stream_captured"))
    state.feed(events[0])  # message_start
    usage, buckets = state.reported()
    assert buckets == frozenset(PROMPT_BUCKETS) and usage.input_tokens == 135
    assert not state.complete
    for e in events[1:]:
        state.feed(e)
        if e["type"] == "message_delta":
            usage, buckets = state.reported()
            assert buckets == frozenset(BUCKETS) and usage.output_tokens == 10
            assert state.complete  # the stop reason is the vendor's word that it finished


def test_openai_reports_nothing_before_its_usage_chunk() -> None:
    state = OpenAIState("openai")
    events = ref("openai_chat_stream_include_usage")
    for e in events[:-1]:
        state.feed(e)
        assert state.reported() == (None, frozenset())
    state.feed(events[-1])
    usage, buckets = state.reported()
    assert buckets == frozenset(BUCKETS) and (usage.prompt_tokens, usage.output_tokens) == (9, 2)


def test_gemini_reports_the_running_total_and_completes_only_at_finish_reason() -> None:
    state = GoogleState("google", "gemini-2.5-flash")
    events = ref("gemini_stream_generate_content")
    for i, e in enumerate(events):
        state.feed(e)
        usage, buckets = state.reported()
        meta = e["usageMetadata"]
        assert buckets == frozenset(BUCKETS)
        assert usage.output_tokens == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
        assert state.complete is (i == len(events) - 1)


def test_cohere_reports_at_message_end_only() -> None:
    state = CohereState("cohere", "command-a")
    events = data(ref("cohere_v2_chat_stream_api_reference"))
    for e in events[:-1]:
        state.feed(e)
        assert state.reported() == (None, frozenset()) and not state.complete
    state.feed(events[-1])
    usage, buckets = state.reported()
    assert (usage.input_tokens, usage.output_tokens) == (5, 26) and state.complete


def test_cohere_event_the_sdk_could_not_parse_is_a_response_error() -> None:
    state = CohereState("cohere", "command-a")
    with pytest.raises(errors.ResponseError, match="not valid JSON"):
        state.feed({"type": "message-start", "event": "content-delta", "data": "{bad"})
