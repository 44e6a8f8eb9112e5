"""A way for a WebSocket server to hand whole text messages to the app as a plain call, not
through ASGI's receive queue (issue 9): a voice session sends fifty messages a second, and
each trip through the queue costs a task wake-up and three layers of `receive`.

The server offers it in the ASGI scope, under `scope["extensions"][DIRECT_TEXT]`, as
`{"set_receiver": set_receiver}`. After `set_receiver(take)`, the server calls `take(text)`
for each whole text message, in order, from its own callback, but only while its receive queue
is empty: a message it queued before (a fragment, a control frame, a message sent before
`take` was set) reaches the app first, through `receive()` as usual, and so does everything
that is not a text message. `take` must not raise, must not block, and must not await.
`set_receiver(None)` stops it. A server that offers nothing (another ASGI server) is read
through `receive()` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

DIRECT_TEXT = "openrealtime.direct_text"

TextReceiver = Callable[[str], None]
SetReceiver = Callable[[TextReceiver | None], None]


def direct_text(scope: Mapping[str, Any]) -> SetReceiver | None:
    """The server's way to set a receiver of whole text messages, if it offers one."""
    offered = scope.get("extensions", {}).get(DIRECT_TEXT)
    return offered.get("set_receiver") if isinstance(offered, dict) else None
