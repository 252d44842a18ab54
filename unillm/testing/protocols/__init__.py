"""FakeProvider's wire protocols, one module each.

Each adapter's `AdapterSpec` (``unillm.adapters.registry``) names its protocol class here
(``fake = "unillm.testing.protocols.openai:OpenAIProtocol"``); FakeProvider serves every
registered one, a request going to the first, in registry order, that matches.
"""
