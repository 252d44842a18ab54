"""FakeProvider: the cohere wire protocol. (placeholder, to be written)"""

from .base import Protocol


class CohereProtocol(Protocol):
    name = "cohere"

    def matches(self, method: str, path: str) -> bool:
        return False
