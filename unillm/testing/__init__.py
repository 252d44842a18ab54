"""Test helpers for unillm and for apps built on it: `FakeProvider`, `Reply`, `FakeApi`."""

from .api import FakeApi
from .fake import FakeProvider, Recorded, Reply, ToolCallSpec

__all__ = ["FakeApi", "FakeProvider", "Reply", "Recorded", "ToolCallSpec"]
