"""Pure tests of unillm.adapters.google.convert against recorded Gemini payloads."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import ref
from unillm.adapters.google import convert
from unillm.errors import InvalidRequestError, UnsupportedParamError
from unillm.profiles import build_settings
from unillm.types import ChatRequest, Usage


@pytest.fixture
def settings():
    return build_settings()["google"]


def req(messages=None, **params):
    return ChatRequest(model="gemini-2.5-flash",
                       messages=messages or [{"role": "user", "content": "hi"}], **params)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


# ── usage: Gemini's semantics into our buckets ──────────────────────────────

def test_usage_cached_prompt_is_split_and_thoughts_count_as_output():
    # promptTokenCount 5 includes cachedContentTokenCount 3; candidates 238 exclude thoughts 41
    usage = convert.usage_from(ref("gemini_generate_content_cached_thinking")["usageMetadata"])
    assert usage == Usage(input_tokens=2, cache_read_tokens=3, output_tokens=279,
                          reasoning_tokens=41, source="provider")
    assert usage.total_tokens == 284  # the vendor's totalTokenCount


def test_usage_without_cache_key():
    usage = convert.usage_from(ref("gemini_generate_content_thinking")["usageMetadata"])
    assert (usage.input_tokens, usage.cache_read_tokens) == (9, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (21, 20)
    assert usage.total_tokens == 30


def test_usage_tool_use_prompt_is_input():
    usage = convert.usage_from({"promptTokenCount": 10, "toolUsePromptTokenCount": 4,
                                "candidatesTokenCount": 2, "totalTokenCount": 16})
    assert usage.input_tokens == 14 and usage.prompt_tokens + usage.completion_tokens == 16


def test_usage_absent_is_none():
    assert convert.usage_from(None) is None
    assert convert.usage_from({}) is None
    body = dict(ref("gemini_generate_content_thinking"))
    body.pop("usageMetadata")
    assert convert.from_response(body, "google").usage is None


def test_usage_from_sdk_object_equals_usage_from_json():
    types = pytest.importorskip("google.genai.types")
    raw = ref("gemini_generate_content_cached_thinking")
    # the SDK drops fields it does not model (turnToken) before validating
    obj = types.GenerateContentResponse.model_validate({k: v for k, v in raw.items() if k != "turnToken"})
    assert convert.usage_from(obj.usage_metadata) == convert.usage_from(raw["usageMetadata"])
    from_obj = convert.from_response(obj, "google", created=1)
    assert from_obj.model_dump() == convert.from_response(raw, "google", created=1).model_dump()


# ── responses ────────────────────────────────────────────────────────────────

def test_from_response_text():
    r = convert.from_response(ref("gemini_generate_content_thinking"), "google", created=1)
    assert r.content == "low"
    assert r.choices[0].finish_reason == "stop"
    assert r.id == "hi77aOvyCJ-jvr0P8syDgQw" and r.model == "gemini-2.5-flash"
    assert r.provider == "google" and r.cost is None and r.created == 1


def test_from_response_json_text_kept_verbatim():
    r = convert.from_response(ref("gemini_generate_content_cached_thinking"), "google")
    assert json.loads(r.content)["simpleString"] == "example"


def _call_body(parts, finish="STOP"):
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish,
                            "index": 0}], "responseId": "resp-1", "modelVersion": "gemini-2.5-flash"}


def test_from_response_tool_calls_get_stable_ids_and_finish_tool_calls():
    body = _call_body([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                       {"functionCall": {"name": "get_time", "args": {}}}])
    r = convert.from_response(body, "google")
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")
    assert convert.from_response(body, "google").choices[0].message.tool_calls[0].id == calls[0].id
    assert r.choices[0].finish_reason == "tool_calls" and r.content is None


def test_vendor_call_id_and_thought_signature_survive():
    sig = base64.b64encode(b"\x01\x02signature").decode()
    body = _call_body([{"functionCall": {"id": "abc", "name": "f", "args": {}},
                        "thoughtSignature": sig}])
    call = convert.from_response(body, "google").choices[0].message.tool_calls[0]
    assert call.id == f"abc__thought__{sig}"


@pytest.mark.parametrize(("raw", "want"), [("STOP", "stop"), ("MAX_TOKENS", "length"),
                                           ("SAFETY", "content_filter"),
                                           ("RECITATION", "content_filter"),
                                           ("MALFORMED_FUNCTION_CALL", "error")])
def test_finish_reasons(raw, want):
    r = convert.from_response(_call_body([{"text": "x"}], raw), "google")
    assert r.choices[0].finish_reason == want


def test_thought_parts_are_not_content():
    r = convert.from_response(_call_body([{"text": "thinking...", "thought": True},
                                          {"text": "answer"}]), "google")
    assert r.content == "answer"


def test_blocked_prompt_is_content_filter():
    r = convert.from_response({"promptFeedback": {"blockReason": "SAFETY"}}, "google")
    assert r.choices[0].finish_reason == "content_filter" and r.content is None


# ── streaming ────────────────────────────────────────────────────────────────

def test_stream_takes_last_cumulative_usage_never_the_sum():
    state = convert.StreamState("google", "gemini-2.5-flash")
    chunks = [c for ev in ref("gemini_stream_generate_content") for c in state.feed(ev)]
    final = state.finish()
    assert all(c.usage is None for c in chunks)
    assert final.usage == Usage(input_tokens=20, output_tokens=513, reasoning_tokens=260)
    assert final.choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("low!") and text.endswith("rather than violet.")
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[1].choices[0].delta.role is None
    assert {c.id for c in chunks + [final]} == {"tS77aIl-4ZvV7w_A9rTBBg"}


def test_stream_tool_calls_are_indexed_and_finish_tool_calls():
    state = convert.StreamState("google", "gemini-2.5-flash")
    out = state.feed(_call_body([{"functionCall": {"name": "a", "args": {"x": 1}}}], finish=None))
    out += state.feed(_call_body([{"functionCall": {"name": "b", "args": {}}}]))
    deltas = [tc for c in out for tc in c.choices[0].delta.tool_calls]
    assert [(d.index, d.function["name"]) for d in deltas] == [(0, "a"), (1, "b")]
    assert json.loads(deltas[0].function["arguments"]) == {"x": 1}
    final = state.finish()
    assert final.choices[0].finish_reason == "tool_calls" and final.usage is None


# ── requests ─────────────────────────────────────────────────────────────────

def test_request_system_and_turns(settings):
    kw = convert.to_request(req([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]), "gemini-2.5-flash", settings)
    assert kw["model"] == "gemini-2.5-flash"
    assert kw["config"]["system_instruction"] == {"parts": [{"text": "be brief"}]}
    assert kw["contents"] == [{"role": "user", "parts": [{"text": "hi"}]},
                              {"role": "model", "parts": [{"text": "hello"}]},
                              {"role": "user", "parts": [{"text": "again"}]}]
    assert kw["config"]["automatic_continuation"] is False  # one attempt per call


def test_request_common_params(settings):
    cfg = convert.to_request(req(temperature=0.3, top_p=0.9, top_k=40, max_tokens=100, stop="END",
                                 seed=7, presence_penalty=0.5, frequency_penalty=-0.5,
                                 reasoning_effort="low"), "m", settings)["config"]
    assert cfg["temperature"] == 0.3 and cfg["top_p"] == 0.9 and cfg["top_k"] == 40
    assert cfg["max_output_tokens"] == 100 and cfg["stop_sequences"] == ["END"]
    assert cfg["seed"] == 7 and cfg["presence_penalty"] == 0.5 and cfg["frequency_penalty"] == -0.5
    assert cfg["thinking_config"] == {"thinking_level": "LOW"}


def test_request_tools_and_tool_choice(settings):
    cfg = convert.to_request(req(tools=[WEATHER], tool_choice="required"), "m", settings)["config"]
    decl = cfg["tools"][0]["function_declarations"][0]
    assert decl["name"] == "get_weather" and decl["description"] == "Weather for a city"
    assert decl["parameters_json_schema"]["required"] == ["city"]
    assert cfg["tool_config"] == {"function_calling_config": {"mode": "ANY"}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    cfg = convert.to_request(req(tools=[WEATHER], tool_choice=named), "m", settings)["config"]
    assert cfg["tool_config"]["function_calling_config"] == {
        "mode": "ANY", "allowed_function_names": ["get_weather"]}
    for ours, theirs in (("auto", "AUTO"), ("none", "NONE")):
        cfg = convert.to_request(req(tools=[WEATHER], tool_choice=ours), "m", settings)["config"]
        assert cfg["tool_config"]["function_calling_config"]["mode"] == theirs


def test_tool_round_trip_maps_results_to_function_names(settings):
    # ids as from_response made them: the conversation sent back must name the functions
    body = _call_body([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                       {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}])
    calls = convert.from_response(body, "google").choices[0].message.tool_calls
    kw = convert.to_request(req([
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"},
    ], tools=[WEATHER]), "m", settings)
    model_turn, results = kw["contents"][1], kw["contents"][2]
    assert model_turn == {"role": "model", "parts": [
        {"function_call": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"function_call": {"name": "get_time", "args": {"tz": "CET"}}}]}
    assert results == {"role": "user", "parts": [
        {"function_response": {"name": "get_weather", "response": {"temp_c": 21}}},
        {"function_response": {"name": "get_time", "response": {"result": "12:00"}}}]}
    assert len(kw["contents"]) == 3  # both results in one turn


def test_vendor_id_and_thought_signature_go_back(settings):
    sig = base64.urlsafe_b64encode(b"\xfb\xffsig").decode()
    tc = {"id": f"v1d__thought__{sig}", "type": "function",
          "function": {"name": "f", "arguments": "{}"}}
    kw = convert.to_request(req([{"role": "user", "content": "go"},
                                 {"role": "assistant", "tool_calls": [tc]},
                                 {"role": "tool", "tool_call_id": tc["id"], "content": "ok"}]),
                            "m", settings)
    part = kw["contents"][1]["parts"][0]
    assert part["function_call"]["id"] == "v1d" and part["thought_signature"] == b"\xfb\xffsig"
    assert kw["contents"][2]["parts"][0]["function_response"]["id"] == "v1d"


def test_tool_result_without_matching_call_is_invalid(settings):
    with pytest.raises(InvalidRequestError, match="nope"):
        convert.to_request(req([{"role": "user", "content": "x"},
                                {"role": "tool", "tool_call_id": "nope", "content": "1"}]),
                           "m", settings)


def test_images_data_url_inline_and_http_file_data(settings):
    png = base64.b64encode(b"\x89PNG fake").decode()
    kw = convert.to_request(req([{"role": "user", "content": [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.webp?s=1"}}]}]), "m", settings)
    parts = kw["contents"][0]["parts"]
    assert parts[1] == {"inline_data": {"mime_type": "image/png", "data": b"\x89PNG fake"}}
    assert parts[2] == {"file_data": {"file_uri": "https://x.test/cat.webp?s=1",
                                      "mime_type": "image/webp"}}


def test_response_format(settings):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    cfg = convert.to_request(req(response_format={"type": "json_schema",
                                                  "json_schema": {"name": "x", "schema": schema}}),
                             "m", settings)["config"]
    assert cfg["response_mime_type"] == "application/json"
    assert cfg["response_json_schema"] == schema
    cfg = convert.to_request(req(response_format={"type": "json_object"}), "m", settings)["config"]
    assert cfg["response_mime_type"] == "application/json" and "response_json_schema" not in cfg


@pytest.mark.parametrize("params", [{"user": "u1"}, {"parallel_tool_calls": False, "tools": [WEATHER]}])
def test_unsupported_params_raise_unless_dropped(settings, params):
    name = next(iter(params))
    with pytest.raises(UnsupportedParamError) as info:
        convert.to_request(req(**params), "m", settings)
    assert info.value.param == name and "google" in str(info.value)
    cfg = convert.to_request(req(drop_params=True, **params), "m", settings)["config"]
    assert name not in cfg


def test_capabilities_from_profile_gate_params(settings):
    caps = settings.capabilities.model_copy(update={"seed": False, "images": False})
    limited = settings.model_copy(update={"capabilities": caps})
    with pytest.raises(UnsupportedParamError, match="seed"):
        convert.to_request(req(seed=1), "m", limited)
    image = [{"role": "user", "content": [
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]
    with pytest.raises(UnsupportedParamError, match="images"):
        convert.to_request(req(image), "m", limited)
    kw = convert.to_request(req(image, seed=1, drop_params=True), "m", limited)
    assert "seed" not in kw["config"] and kw["contents"][0]["parts"] == [{"text": "x"}]


def test_extra_goes_into_config(settings):
    cfg = convert.to_request(req(extra={"safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH",
                                                             "threshold": "BLOCK_NONE"}]}),
                             "m", settings)["config"]
    assert cfg["safety_settings"][0]["threshold"] == "BLOCK_NONE"


def test_request_kwargs_validate_in_the_sdk(settings):
    types = pytest.importorskip("google.genai.types")
    kw = convert.to_request(req([{"role": "system", "content": "s"},
                                 {"role": "user", "content": "hi"}], tools=[WEATHER],
                                tool_choice="auto", max_tokens=5,
                                response_format={"type": "json_object"}), "m", settings)
    cfg = types.GenerateContentConfig.model_validate(kw["config"])
    assert cfg.max_output_tokens == 5 and cfg.tools[0].function_declarations[0].name == "get_weather"
