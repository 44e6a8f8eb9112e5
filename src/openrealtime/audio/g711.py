"""G.711 μ-law and A-law, bit-exact with the stdlib `audioop` (removed in Python 3.13).

Every direction is a table lookup: 256 entries to decode, 65536 to encode (indexed by the
uint16 view of the samples), so a 20 ms chunk costs a single numpy gather. The tables are
built once at import by the reference algorithms (CCITT g711.c, as `audioop` implements them).
"""

from __future__ import annotations

import numpy as np


def _all_codes() -> np.ndarray:
    return np.arange(256, dtype=np.int32)


def _all_pcm() -> np.ndarray:
    """Every int16 value, in the order of its uint16 view (the encode tables' index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_decode_table() -> np.ndarray:
    u = ~_all_codes() & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = _all_codes() ^ 0x55
    seg = (a & 0x70) >> 4
    t = (((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)) << np.maximum(seg - 1, 0)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(mag: np.ndarray, seg_end: np.ndarray) -> np.ndarray:
    # First segment whose end is >= mag; 8 means "beyond the last one" (clipped).
    return np.searchsorted(seg_end, mag, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = _all_pcm() >> 2  # audioop works on 14-bit magnitudes
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = _segment(mag, np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]))
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = _all_pcm() >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(mag, np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]))
    quant = (mag >> np.where(seg < 2, 1, seg)) & 0x0F
    code = (seg << 4) | quant
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


_ULAW_DEC = _ulaw_decode_table()
_ALAW_DEC = _alaw_decode_table()
_ULAW_ENC = _ulaw_encode_table()
_ALAW_ENC = _alaw_encode_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes → int16 samples (same rate, one sample per byte)."""
    return _ULAW_DEC.take(np.frombuffer(data, np.uint8))


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes → int16 samples."""
    return _ALAW_DEC.take(np.frombuffer(data, np.uint8))


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → μ-law bytes."""
    return _ULAW_ENC.take(_as_index(pcm)).tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → A-law bytes."""
    return _ALAW_ENC.take(_as_index(pcm)).tobytes()


def _as_index(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype != np.int16:
        # Refuse rather than wrap silently: float or int32 audio here is a caller bug.
        raise TypeError(f"G.711 encode needs int16 samples; got {pcm.dtype}")
    return pcm.view(np.uint16)
