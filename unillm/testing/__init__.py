"""Test helpers for unillm and for apps built on it: `FakeProvider`, `Reply`."""

from .fake import FakeProvider, Recorded, Reply, ToolCallSpec

__all__ = ["FakeProvider", "Reply", "Recorded", "ToolCallSpec"]
