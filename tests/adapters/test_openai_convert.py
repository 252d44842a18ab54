"""Pure tests of the OpenAI convert functions, on the vendor's recorded/documented payloads."""

from __future__ import annotations

import copy
import inspect
import json

import pytest

from tests.conftest import ref
from unillm import errors
from unillm.adapters.openai import convert
from unillm.profiles import build_settings
from unillm.types import ChatRequest, Message

SETTINGS = build_settings()
OPENAI = SETTINGS["openai"]

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def req(**kw) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatRequest(model=kw.pop("model", "gpt-4o-mini"), **kw)


def with_tool_call(body: dict) -> dict:
    body = copy.deepcopy(body)
    body["choices"][0]["message"].update(content=None, tool_calls=[{
        "id": "call_abc", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


# ── usage: the vendor's documented semantics ─────────────────────────────────

def test_usage_api_reference_example():
    u = convert.usage_from(ref("openai_chat_completion_api_reference")["usage"])
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (19, 0, 10, 0)
    assert u.total_tokens == 29 and u.source == "provider"


def test_usage_tolerates_missing_prompt_tokens_details():
    u = convert.usage_from(ref("openai_chat_completion_captured")["usage"])
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (14, 0, 37)


def test_cached_tokens_are_inside_prompt_tokens_and_counted_once():
    u = convert.usage_from(ref("openai_usage_prompt_caching_doc_fragment")["usage"])
    assert u.cache_read_tokens == 1920
    assert u.input_tokens == 2006 - 1920  # only the uncached part is billed at the input price
    assert u.prompt_tokens == 2006 and u.total_tokens == 2306
    assert u.prompt_tokens_details.cached_tokens == 1920


def test_responses_style_usage_with_cached_and_reasoning_tokens():
    u = convert.usage_from(ref("openai_batch_usage_api_reference_fragment")["usage"])
    assert (u.input_tokens, u.cache_read_tokens) == (1500 - 1024, 1024)
    assert (u.output_tokens, u.reasoning_tokens) == (500, 300)  # reasoning is part of output
    assert u.total_tokens == 2000


def test_reasoning_tokens_are_inside_completion_tokens():
    u = convert.usage_from(ref("openai_responses_api_reasoning_api_reference")["usage"])
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (81, 1035, 832)
    assert u.completion_tokens == 1035


def test_cache_write_tokens_come_out_of_prompt_tokens():
    u = convert.usage_from({"prompt_tokens": 3000, "completion_tokens": 5, "total_tokens": 3005,
                            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500}})
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (500, 1000, 1500)
    assert u.prompt_tokens == 3000


def test_reasoning_reported_outside_completion_tokens_is_added_once():
    # some compatible vendors (xAI) count reasoning beside completion_tokens; total_tokens tells
    u = convert.usage_from({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 130,
                            "completion_tokens_details": {"reasoning_tokens": 100}})
    assert (u.output_tokens, u.reasoning_tokens) == (120, 100)
    assert u.total_tokens == 130


def test_deepseek_cache_hit_tokens():
    u = convert.usage_from({"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                            "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36})
    assert (u.input_tokens, u.cache_read_tokens) == (36, 64)


@pytest.mark.parametrize("raw", [None, {}, {"total_tokens": None}])
def test_no_usage_is_none(raw):
    assert convert.usage_from(raw) is None


def test_usage_from_sdk_object():
    from openai.types import CompletionUsage
    raw = ref("openai_usage_prompt_caching_doc_fragment")["usage"]
    assert convert.usage_from(CompletionUsage.model_validate(raw)) == convert.usage_from(raw)


# ── responses ────────────────────────────────────────────────────────────────

def test_from_response_dict():
    r = convert.from_response(ref("openai_chat_completion_api_reference"), "openai")
    assert r.id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT" and r.created == 1741569952
    assert r.model == "gpt-5.4" and r.provider == "openai"
    assert r.content == "Hello! How can I assist you today?"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 19 and r.cost is None


def test_from_response_sdk_object_equals_dict():
    from openai.types.chat import ChatCompletion
    body = ref("openai_chat_completion_captured")
    assert convert.from_response(ChatCompletion.model_validate(body), "openai") == \
        convert.from_response(body, "openai")


def test_from_response_without_usage():
    body = ref("openai_chat_completion_captured")
    del body["usage"]
    assert convert.from_response(body, "openai").usage is None


def test_from_response_tool_call():
    r = convert.from_response(with_tool_call(ref("openai_chat_completion_captured")), "openai")
    msg = r.choices[0].message
    assert msg.content is None and r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].id == "call_abc"
    assert msg.tool_calls[0].function.name == "get_weather"
    assert msg.tool_calls[0].function.parsed_arguments() == {"city": "Paris"}


@pytest.mark.parametrize("vendor, ours", [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"),
    ("content_filter", "content_filter"), ("function_call", "tool_calls"),
    ("model_length", "length"), ("something_new", None), (None, None),
])
def test_finish_reasons(vendor, ours):
    body = ref("openai_chat_completion_captured")
    body["choices"][0]["finish_reason"] = vendor
    assert convert.from_response(body, "openai").choices[0].finish_reason == ours


@pytest.mark.parametrize("raw", ["<html>bad gateway</html>", {"id": "x"}, None])
def test_unreadable_response_is_response_error(raw):
    with pytest.raises(errors.ResponseError) as info:
        convert.from_response(raw, "groq")
    assert info.value.provider == "groq"


# ── streams ──────────────────────────────────────────────────────────────────

def run_stream(events, provider="openai"):
    state = convert.StreamState(provider)
    chunks = [c for e in events for c in state.feed(e)]
    return state, chunks + state.finish()


def test_stream_recorded_with_usage():
    state, chunks = run_stream(ref("openai_chat_stream_include_usage"))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Foo!"
    with_usage = [c for c in chunks if c.usage is not None]
    assert with_usage == [chunks[-1]] and chunks[-1].choices == []
    u = chunks[-1].usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (9, 2, 11)
    assert state.complete and state.finish_reason == "stop"
    assert {c.id for c in chunks} == {"chatcmpl-ABfw5EzoqmfXjnnsXY7Yd8OC6tb3c"}
    assert chunks[0].choices[0].delta.role == "assistant"


def test_stream_long_recorded_usage():
    _, chunks = run_stream(ref("openai_chat_stream_include_usage_long"))
    assert chunks[-1].usage.prompt_tokens == 14 and chunks[-1].usage.completion_tokens == 30
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("I'm unable")


def test_stream_sdk_objects_equal_dicts():
    from openai.types.chat import ChatCompletionChunk
    events = ref("openai_chat_stream_include_usage")
    _, from_dicts = run_stream(events)
    _, from_objs = run_stream([ChatCompletionChunk.model_validate(e) for e in events])
    assert from_objs == from_dicts


def test_cumulative_usage_repeated_per_event_is_taken_once():
    events = ref("openai_chat_stream_include_usage")[:4]
    for n, e in enumerate(events, 1):  # a vendor repeating running totals on every chunk
        e["usage"] = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}
    _, chunks = run_stream(events)
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1 and usages[0].output_tokens == 4 and usages[0].input_tokens == 9


def test_usage_on_last_content_chunk_moves_to_a_final_chunk():
    events = ref("openai_chat_stream_include_usage")[:4]  # no separate usage chunk
    events[-1]["usage"] = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    _, chunks = run_stream(events)
    assert [c.usage is not None for c in chunks] == [False] * 4 + [True]
    assert chunks[3].choices[0].finish_reason == "stop"


def test_stream_without_usage_has_no_usage_chunk():
    state, chunks = run_stream(ref("openai_chat_stream_include_usage")[:4])
    assert all(c.usage is None for c in chunks) and len(chunks) == 4 and state.usage is None


def test_stream_tool_call_deltas():
    def ev(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def args(text):
        return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}

    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    events = [ev({"role": "assistant", "content": None}), ev({"tool_calls": [head]}),
              ev(args("{\"a\"")), ev(args(": 1}")), ev({}, "tool_calls")]
    state, chunks = run_stream(events)
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "call_1" and deltas[0].function == {"name": "f", "arguments": ""}
    assert "".join(d.function["arguments"] for d in deltas) == "{\"a\": 1}"
    assert deltas[1].id is None and deltas[1].function == {"arguments": "{\"a\""}
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and state.complete


def test_cut_stream_is_not_complete():
    state, _ = run_stream(ref("openai_chat_stream_include_usage")[:2])
    assert not state.complete


# ── requests ─────────────────────────────────────────────────────────────────

def test_minimal_request():
    assert convert.to_request(req(), "gpt-4o-mini", OPENAI) == {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_system_prompt_and_multi_turn_in_order():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again", "name": "bob"}]
    kw = convert.to_request(req(messages=msgs), "gpt-4o", OPENAI)
    assert kw["messages"] == msgs


def test_tools_and_tool_choice():
    choice = {"type": "function", "function": {"name": "get_weather"}}
    kw = convert.to_request(req(tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=False),
                            "gpt-4o", OPENAI)
    assert kw["tools"] == [WEATHER_TOOL]
    assert kw["tool_choice"] == choice and kw["parallel_tool_calls"] is False


def test_assistant_tool_calls_and_tool_results_round_trip():
    r = convert.from_response(with_tool_call(ref("openai_chat_completion_captured")), "openai")
    assistant = Message(role="assistant", content=None, tool_calls=r.choices[0].message.tool_calls)
    result = {"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp_c\": 18}"}
    kw = convert.to_request(req(messages=[{"role": "user", "content": "weather?"}, assistant, result],
                                tools=[WEATHER_TOOL]), "gpt-4o", OPENAI)
    assert kw["messages"][1] == {"role": "assistant", "tool_calls": [{
        "id": "call_abc", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
    assert kw["messages"][2] == result


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "data:image/png;base64,iVBORw0KGgo="])
def test_images_url_and_base64(url):
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]
    kw = convert.to_request(req(messages=[{"role": "user", "content": content}]), "gpt-4o", OPENAI)
    assert kw["messages"][0]["content"] == content


def test_images_unsupported_by_profile():
    content = [{"type": "text", "text": "what?"},
               {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    r = req(model="deepseek-chat", messages=[{"role": "user", "content": content}])
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(r, "deepseek-chat", SETTINGS["deepseek"])
    assert info.value.provider == "deepseek" and info.value.param == "images"
    assert "deepseek" in str(info.value) and "images" in str(info.value)
    dropped = r.model_copy(update={"drop_params": True})
    kw = convert.to_request(dropped, "deepseek-chat", SETTINGS["deepseek"])
    assert kw["messages"][0]["content"] == [{"type": "text", "text": "what?"}]


def test_response_format_json_schema_as_is():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "num", "schema": schema, "strict": True}}
    kw = convert.to_request(req(response_format=fmt), "gpt-4o", OPENAI)
    assert kw["response_format"] == fmt


def test_common_params():
    kw = convert.to_request(req(temperature=0.2, top_p=0.9, max_tokens=50, stop="END", seed=7,
                                frequency_penalty=0.5, presence_penalty=-0.5, user="u1",
                                reasoning_effort="low"), "gpt-4o", OPENAI)
    assert {k: kw[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "frequency_penalty",
                               "presence_penalty", "user", "reasoning_effort")} == {
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": ["END"], "seed": 7,
        "frequency_penalty": 0.5, "presence_penalty": -0.5, "user": "u1", "reasoning_effort": "low"}
    assert "max_completion_tokens" not in kw


@pytest.mark.parametrize("provider, model, key", [
    ("openai", "o3-mini", "max_completion_tokens"), ("openai", "gpt-5", "max_completion_tokens"),
    ("openai", "o1", "max_completion_tokens"), ("openai", "gpt-4o", "max_tokens"),
    ("deepseek", "deepseek-reasoner", "max_tokens"),
])
def test_max_tokens_name(provider, model, key):
    kw = convert.to_request(req(model=model, max_tokens=64), model, SETTINGS[provider])
    assert kw[key] == 64 and len({"max_tokens", "max_completion_tokens"} & set(kw)) == 1


def test_top_k_is_not_in_chat_completions():
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(req(top_k=5), "gpt-4o", OPENAI)
    assert info.value.param == "top_k" and info.value.provider == "openai"
    assert "top_k" not in convert.to_request(req(top_k=5, drop_params=True), "gpt-4o", OPENAI)


def test_profile_without_tools_raises_or_drops():
    perplexity = SETTINGS["perplexity"]
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(req(model="sonar", tools=[WEATHER_TOOL], tool_choice="auto"), "sonar", perplexity)
    assert info.value.provider == "perplexity" and info.value.param == "tools"
    kw = convert.to_request(req(model="sonar", tools=[WEATHER_TOOL], tool_choice="auto", drop_params=True),
                            "sonar", perplexity)
    assert "tools" not in kw and "tool_choice" not in kw


def test_profile_without_seed():
    with pytest.raises(errors.UnsupportedParamError, match="deepseek.*seed"):
        convert.to_request(req(seed=1), "deepseek-chat", SETTINGS["deepseek"])


def test_stream_asks_for_usage_only_where_the_profile_says_so():
    kw = convert.to_request(req(), "gpt-4o", OPENAI, stream=True)
    assert kw["stream"] is True and kw["stream_options"] == {"include_usage": True}
    kw = convert.to_request(req(), "mistral-small", SETTINGS["mistral"], stream=True)
    assert kw["stream"] is True and "stream_options" not in kw


def test_extra_known_kwargs_pass_unknown_go_to_extra_body():
    kw = convert.to_request(req(extra={"logprobs": True, "service_tier": "flex", "top_k": 3,
                                       "extra_body": {"safe_prompt": True}}), "gpt-4o", OPENAI)
    assert kw["logprobs"] is True and kw["service_tier"] == "flex"
    assert kw["extra_body"] == {"safe_prompt": True, "top_k": 3}


def test_sdk_accepts_every_kwarg_we_may_send():
    from openai.resources.chat.completions import Completions
    params = set(inspect.signature(Completions.create).parameters)
    assert convert.SDK_KWARGS <= params
    full = convert.to_request(req(tools=[WEATHER_TOOL], tool_choice="auto", parallel_tool_calls=True,
                                  response_format={"type": "json_object"}, temperature=1, top_p=1,
                                  max_tokens=5, stop=["x"], seed=1, frequency_penalty=0,
                                  presence_penalty=0, user="u", reasoning_effort="high"),
                              "gpt-4o", OPENAI, stream=True)
    assert set(full) <= params
    json.dumps(full)  # plain data: what the SDK will serialise
