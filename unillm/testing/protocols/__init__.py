"""FakeProvider's wire protocols, one module each; a request goes to the first that matches."""

from .anthropic import AnthropicProtocol
from .cohere import CohereProtocol
from .google import GoogleProtocol
from .openai import OpenAIProtocol

PROTOCOLS = [OpenAIProtocol(), AnthropicProtocol(), GoogleProtocol(), CohereProtocol()]
