"""FakeProvider: the anthropic wire protocol. (placeholder, to be written)"""

from .base import Protocol


class AnthropicProtocol(Protocol):
    name = "anthropic"

    def matches(self, method: str, path: str) -> bool:
        return False
