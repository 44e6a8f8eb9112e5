"""What a socket talks to, apart from the transport that pumps it: light to import, so the
server's call registry need not load the session machinery at start (issue 9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent


class EventSource(Protocol):
    """What a socket talks to: a session's driver, or a stand-in relaying to one elsewhere
    (a sideband on another instance). Only an owner also starts and closes it."""

    def add_sink(self, sink: Callable[[ServerEvent], None]) -> None: ...
    def remove_sink(self, sink: Callable[[ServerEvent], None]) -> None: ...
    def receive(self, event: Any) -> None: ...
    def reject(self, error: ProtocolError) -> None: ...
