"""uvicorn's websockets-sansio WebSocket protocol, with its per-message costs cut for the
messages a voice session sends fifty times a second (issue 9).

- **Whole text frames are parsed here.** uvicorn hands every byte to the `websockets` sans-I/O
  parser: a generator per frame, a `Frame` object, an event list, a dispatch on the opcode. For
  the common case — the parser waiting for a new frame, and the data starting with complete,
  masked, unfragmented text frames that carry no extension bits — this reads the header,
  unmasks with `websockets`' own C routine and decodes the UTF-8 itself, queueing the same
  `websocket.receive` message. Anything else (a partial frame, a control frame, a fragment, a
  frame over FAST_MAX_BYTES, invalid UTF-8, compression negotiated) goes, from that frame on,
  to the parser as before, which answers it exactly as it did.
- **Whole text frames go straight to the app** when it asked for them
  (transports/direct_text.py) and nothing waits in the receive queue: a plain call, not a
  queued message and a task woken to take it.
- **Reading pauses only when messages pile up.** uvicorn pauses the socket after every message
  and resumes it when the app takes it: two changes of the loop's poll set per message. Here
  the socket pauses once QUEUE_SLACK messages wait for the app (so a client that floods is
  still held back, by a few frames more).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.streams import StreamReader

from ..transports.direct_text import DIRECT_TEXT, TextReceiver

try:
    from websockets.speedups import apply_mask
except ImportError:  # a build without the C extension
    from websockets.utils import apply_mask

# Larger frames are rare (a big append, an image): the parser's cost is small beside them.
FAST_MAX_BYTES = 256 * 1024
# Messages taken from the socket before the app reads them, before reading pauses.
QUEUE_SLACK = 16

_AT_EOF = StreamReader.at_eof.__code__  # where the parser waits between frames
_FIN_TEXT = 0x81  # FIN, no RSV bits, opcode 1 (text)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    text_receiver: TextReceiver | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # None: the handshake was refused
        if scope is not None:
            scope["extensions"][DIRECT_TEXT] = {"set_receiver": self._set_text_receiver}

    def _set_text_receiver(self, receiver: TextReceiver | None) -> None:
        self.text_receiver = receiver

    def data_received(self, data: bytes) -> None:
        if self._between_frames():
            data = self._take_text_frames(data)
            if not data:
                return
        super().data_received(data)

    def _between_frames(self) -> bool:
        """The connection is open, no message is half received, no extension transforms
        frames, and the parser holds no bytes and waits at the start of a frame."""
        conn = self.conn
        if conn.state is not State.OPEN or self.close_sent or conn.current_size is not None:
            return False
        if conn.extensions or conn.reader.buffer:
            return False
        # The parser is a chain of generators (the handshake's, then the frames'): innermost,
        # it waits in `at_eof` only between frames.
        waiting: Any = conn.parser
        while (inner := getattr(waiting, "gi_yieldfrom", None)) is not None:
            waiting = inner
        return waiting.gi_code is _AT_EOF

    def _take_text_frames(self, data: bytes) -> bytes:
        """Take the whole text frames `data` starts with (to the app's receiver, or else to
        the queue); return what is left for the parser, from the first frame not taken."""
        end = len(data)
        limit = min(FAST_MAX_BYTES, self.conn.max_message_size or FAST_MAX_BYTES)
        queue = self.queue
        put = queue.put_nowait
        pos = 0
        while end - pos >= 6:
            if data[pos] != _FIN_TEXT:
                break
            length = data[pos + 1] ^ 0x80  # the mask bit must be set: a client's frame
            if length < 126:
                start = pos + 2
            elif length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:  # masked with a 64-bit length (past FAST_MAX_BYTES), or unmasked
                break
            stop = start + 4 + length
            if length > limit or stop > end:
                break
            try:
                text = apply_mask(data[start + 4 : stop], data[start : start + 4]).decode()
            except UnicodeDecodeError:
                break  # the parser closes the connection with 1007, as before
            # Read per frame: the receiver may end the session and withdraw itself.
            receiver = self.text_receiver
            if receiver is not None and queue.empty():
                receiver(text)
            else:
                put({"type": "websocket.receive", "text": text})
            pos = stop
        if pos and not self.read_paused and self.queue.qsize() >= QUEUE_SLACK:
            self.read_paused = True
            self.transport.pause_reading()
        return data[pos:] if pos else data
