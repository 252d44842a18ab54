"""unillm-example: a third-party adapter for the "example" wire protocol.

Everything unillm needs to know of the protocol is this one `AdapterSpec`, registered
through the ``unillm.adapters`` entry point in pyproject.toml (the entry's name is the
protocol a profile writes: ``adapter = "example"``). The wire protocol, tiny on purpose::

    POST {base_url}/example/generate  {"model", "messages": [{"role", "content"}], "stream"}
    -> {"id", "model", "output": "text", "stop": "end" | "limit",
        "meter": {"prompt": 12, "completion": 3}}

A stream is server-sent events ``{"delta": "te"}`` ... then ``{"done": true, "stop": ..,
"meter": {..}}``. The SDK is httpx (``sdk_module``): what ``Adapter.load_sdk`` imports
and what ``pip install`` gets when it is missing (``install``).
"""

from unillm.adapters.registry import AdapterSpec

ADAPTER = AdapterSpec(
    protocol="example",
    adapter="unillm_example.adapter:ExampleAdapter",
    converter="unillm_example.convert",
    sdk_module="httpx",
    install="unillm-example",
    detect="unillm_example.convert:detect",             # lets unillm.track() recognise its JSON
    fake="unillm_example.fake:ExampleProtocol",         # lets FakeProvider serve it in tests
    capabilities={"tools": False, "tool_choice": False, "images": False, "json_schema": False,
                  "json_object": False, "seed": False, "top_k": False},
)
