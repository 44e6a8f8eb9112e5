"""The server-side player, driven directly: events in, frames pulled, no clock."""

from __future__ import annotations

import base64

import numpy as np

from openrealtime.audio import g711
from openrealtime.protocol import server_events as ev
from openrealtime.transports.playout import Playout

FRAME = 960  # 20 ms at 48 kHz


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.positions: list[tuple[str, float, bool]] = []
        self.playout = Playout(
            emit=self.events.append,
            on_position=lambda item, ms, playing: self.positions.append((item, ms, playing)),
        )

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def frames(self, n: int) -> np.ndarray:
        return np.concatenate([self.playout.next_frame() for _ in range(n)])


def _created(response_id: str, fmt: str = "audio/pcm") -> dict:
    return ev.response_created(
        {"id": response_id, "audio": {"output": {"format": {"type": fmt}, "voice": "alloy"}}}
    )


def _delta(response_id: str, item_id: str, raw: bytes) -> dict:
    return ev.response_output_audio_delta(
        response_id, item_id, 0, 0, base64.b64encode(raw).decode()
    )


def _done(response_id: str, status: str = "completed") -> dict:
    return ev.response_done({"id": response_id, "status": status})


def _tone(ms: int, rate: int = 24000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def test_idle_is_silence_and_reports_nothing() -> None:
    rec = Recorder()
    assert not rec.frames(3).any()
    assert rec.events == [] and rec.positions == []


def test_a_response_plays_then_stops_after_its_done() -> None:
    rec = Recorder()
    rec.playout.take(_created("r1"))
    rec.playout.take(_delta("r1", "i1", _tone(100).tobytes()))
    rec.playout.take(ev.response_output_audio_done("r1", "i1", 0, 0))
    played = rec.frames(3)
    assert rec.types() == ["output_audio_buffer.started"]
    assert np.abs(played).max() > 4000
    assert rec.positions[-1] == ("i1", 60.0, True)
    rec.frames(3)  # 120 ms: all 100 ms played, but the response is not done
    assert rec.types() == ["output_audio_buffer.started"]
    assert rec.positions[-1][2] is False and abs(rec.positions[-1][1] - 100) < 1
    rec.playout.take(_done("r1"))
    assert rec.types() == ["output_audio_buffer.started"]  # never from inside the sink
    rec.frames(1)
    assert rec.types() == ["output_audio_buffer.started", "output_audio_buffer.stopped"]
    assert all(e["response_id"] == "r1" for e in rec.events)


def test_dry_mid_item_reports_not_playing_once_and_resumes() -> None:
    rec = Recorder()
    rec.playout.take(_created("r1"))
    rec.playout.take(_delta("r1", "i1", _tone(40).tobytes()))
    rec.frames(4)
    dry = [p for p in rec.positions if not p[2]]
    assert len(dry) == 1
    rec.playout.take(_delta("r1", "i1", _tone(40).tobytes()))
    rec.frames(1)
    assert rec.positions[-1][2] is True and rec.positions[-1][1] > dry[0][1]
    assert rec.types() == ["output_audio_buffer.started"]  # started once per response


def test_clear_drops_everything_and_later_audio_of_that_response() -> None:
    rec = Recorder()
    rec.playout.take(_created("r1"))
    rec.playout.take(_delta("r1", "i1", _tone(500).tobytes()))
    rec.frames(2)
    rec.playout.clear()
    assert rec.types()[-1] == "output_audio_buffer.cleared"
    assert rec.events[-1]["response_id"] == "r1"
    rec.playout.take(_delta("r1", "i1", _tone(500).tobytes()))  # still arriving
    assert not rec.frames(5).any()
    rec.playout.take(_done("r1", "cancelled"))
    assert "output_audio_buffer.stopped" not in rec.types()
    # A later response plays again.
    rec.playout.take(_created("r2"))
    rec.playout.take(_delta("r2", "i2", _tone(60).tobytes()))
    assert rec.frames(2).any()


def test_responses_play_in_turn_and_g711_is_decoded() -> None:
    rec = Recorder()
    rec.playout.take(_created("r1", "audio/pcmu"))
    rec.playout.take(_created("r2"))
    rec.playout.take(_delta("r1", "i1", g711.ulaw_encode(_tone(100, 8000))))
    rec.playout.take(_delta("r2", "i2", _tone(100).tobytes()))
    rec.playout.take(_done("r1"))
    rec.playout.take(_done("r2"))
    rec.frames(20)
    assert rec.types() == [
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
    ]
    assert [e["response_id"] for e in rec.events] == ["r1", "r1", "r2", "r2"]
    finals = {}
    for item, ms, _ in rec.positions:
        finals[item] = ms
    assert abs(finals["i1"] - 100) < 2 and abs(finals["i2"] - 100) < 2


def test_idle_only_once_nothing_is_left_to_play_emit_or_report() -> None:
    """The track may stop pulling frames while `idle`: so it is idle only when a frame would
    be silence with no event and no position to give, and `on_audio` wakes it."""
    rec = Recorder()
    wakes: list[None] = []
    rec.playout.on_audio = lambda: wakes.append(None)
    assert rec.playout.idle
    rec.playout.take(_created("r1"))
    assert rec.playout.idle and not wakes  # a response without audio yet plays nothing
    rec.playout.take(_delta("r1", "i1", _tone(40).tobytes()))
    assert not rec.playout.idle and wakes
    rec.frames(3)  # dry mid-item: the response is not done, `stopped` is still to come
    assert not rec.playout.idle
    rec.playout.take(_done("r1"))
    rec.frames(1)  # the resampler's tail, then `stopped`
    assert rec.types()[-1] == "output_audio_buffer.stopped"
    assert not rec.playout.idle  # the position where it stopped is still to report
    rec.frames(1)
    assert rec.positions[-1][2] is False and rec.playout.idle
    rec.playout.take(_created("r2"))
    rec.playout.take(_delta("r2", "i2", _tone(40).tobytes()))
    rec.frames(1)
    rec.playout.clear()  # cleared while playing: nothing more to report
    assert rec.playout.idle
