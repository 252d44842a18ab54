"""FakeProvider: the google wire protocol. (placeholder, to be written)"""

from .base import Protocol


class GoogleProtocol(Protocol):
    name = "google"

    def matches(self, method: str, path: str) -> bool:
        return False
