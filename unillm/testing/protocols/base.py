"""What a FakeProvider wire protocol provides. Pure rendering: no sockets here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..replies import Ctx, Reply

if TYPE_CHECKING:
    from ..fake import FakeProvider


class Protocol:
    """One wire protocol FakeProvider speaks; an `AdapterSpec`'s ``fake`` names its class."""

    name: str = ""
    #: what the SDK's ``base_url`` adds to the server's address (``/v1`` for OpenAI's)
    base_path: str = ""
    #: the paths this protocol serves (POSTed), for `matches` and `route_group`
    route: re.Pattern[str] | None = None
    #: how the path of a streaming request ends; "" when the body's ``"stream": true`` asks
    stream_suffix: str = ""

    def matches(self, method: str, path: str) -> bool:
        """True when this protocol serves ``method path``: a POST to `route`."""
        return method == "POST" and self.route is not None and self.route.match(path) is not None

    def is_stream(self, path: str, query: str, body: Any) -> bool:
        """True when the request asks for a stream: by its path (`stream_suffix`), else its body."""
        if self.stream_suffix:
            return path.endswith(self.stream_suffix)
        return isinstance(body, dict) and body.get("stream") is True

    def route_group(self, path: str, n: int) -> str:
        """Group ``n`` of `route`'s match of ``path`` ("" when it does not match)."""
        match = self.route.match(path) if self.route is not None else None
        return match.group(n) if match else ""

    def model(self, path: str, body: Any) -> str:
        return body.get("model", "") if isinstance(body, dict) else ""

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        """The vendor's JSON body for a successful non-streaming reply."""
        raise NotImplementedError

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        """The vendor's SSE events: ``(event_name, data)`` tuples or bare data (dict or str)."""
        raise NotImplementedError

    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        """The vendor's error body for ``reply.status`` with message ``reply.error``."""
        raise NotImplementedError

    #: the content type of a stream, and `frames` its wire framing (SSE unless a protocol differs)
    stream_content_type: str = "text/event-stream"

    def frames(self, events: list[Any]) -> Iterator[bytes] | None:
        """The stream's events as bytes on the wire; None: server-sent events."""
        return None

    def client_settings(self, fake: FakeProvider) -> dict[str, Any]:
        """What ``fake.providers()`` sets on a provider of this protocol to reach ``fake``."""
        return {"base_url": fake.url + self.base_path, "api_key": fake.api_key}
