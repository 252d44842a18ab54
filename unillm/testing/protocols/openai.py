"""FakeProvider: the openai wire protocol. (placeholder, to be written)"""

from .base import Protocol


class OpenAIProtocol(Protocol):
    name = "openai"

    def matches(self, method: str, path: str) -> bool:
        return False
