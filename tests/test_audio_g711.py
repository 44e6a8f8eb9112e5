import warnings

import numpy as np
import pytest

from openrealtime.audio import g711

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(65536, dtype=np.uint16).view(np.int16)


@pytest.fixture(scope="module")
def audioop():
    """The reference implementation: deprecated in 3.11, gone in 3.13 (the tests then skip)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")


def test_ulaw_decode_matches_audioop_for_every_code(audioop):
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), "<i2")
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_audioop_for_every_code(audioop):
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), "<i2")
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), expected)


def test_ulaw_encode_matches_audioop_for_every_sample(audioop):
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_sample(audioop):
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_round_trips(encode, decode):
    # code -> pcm -> code is the identity, except μ-law's two zeros (0x7F, 0xFF) which
    # both decode to 0 and re-encode to 0xFF.
    codes = encode(decode(ALL_CODES))
    differing = {c for c, r in zip(ALL_CODES, codes, strict=True) if c != r}
    assert differing <= {0x7F}
    # pcm -> code -> pcm stays within one quantisation step (at most 1/16 of the value).
    pcm = ALL_PCM.astype(np.int32)
    error = np.abs(decode(encode(ALL_PCM)).astype(np.int32) - pcm)
    assert np.all(error <= np.maximum(np.abs(pcm) // 16, 16) + 8)


def test_empty_input():
    for decode in (g711.ulaw_decode, g711.alaw_decode):
        out = decode(b"")
        assert out.dtype == np.int16 and out.size == 0
    for encode in (g711.ulaw_encode, g711.alaw_encode):
        assert encode(np.zeros(0, np.int16)) == b""


def test_encode_refuses_non_int16():
    with pytest.raises(TypeError, match="int16"):
        g711.ulaw_encode(np.zeros(4, np.float32))
