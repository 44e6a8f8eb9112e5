import numpy as np
import pytest

from openrealtime.audio import g711
from openrealtime.audio.formats import (
    AudioFormat,
    AudioFormatError,
    bytes_per_sample,
    decode,
    duration_ms,
    encode,
    sample_rate,
)

RAMP = np.linspace(-30000, 30000, 480).astype(np.int16)


def test_wire_names_and_properties():
    assert AudioFormat("audio/pcm") is AudioFormat.PCM
    assert [sample_rate(f) for f in AudioFormat] == [24000, 8000, 8000]
    assert [bytes_per_sample(f) for f in AudioFormat] == [2, 1, 1]


def test_durations():
    assert duration_ms(AudioFormat.PCM, 960) == 20.0  # 480 samples at 24 kHz
    assert duration_ms(AudioFormat.PCMU, 160) == 20.0
    assert duration_ms(AudioFormat.PCMA, 8000) == 1000.0
    assert duration_ms(AudioFormat.PCM, 0) == 0.0


def test_pcm_is_little_endian_and_zero_copy():
    data = bytes([0x01, 0x00, 0xFF, 0x7F, 0x00, 0x80])
    pcm = decode(AudioFormat.PCM, data)
    assert pcm.dtype == np.int16 and pcm.tolist() == [1, 32767, -32768]
    assert not pcm.flags.owndata  # a view on the received bytes
    assert encode(AudioFormat.PCM, pcm) == data


@pytest.mark.parametrize(
    ("fmt", "codec_encode"),
    [(AudioFormat.PCMU, g711.ulaw_encode), (AudioFormat.PCMA, g711.alaw_encode)],
)
def test_g711_formats_use_their_codec(fmt, codec_encode):
    data = encode(fmt, RAMP)
    assert data == codec_encode(RAMP) and len(data) == RAMP.size
    decoded = decode(fmt, data)
    assert decoded.dtype == np.int16 and decoded.size == RAMP.size
    assert np.max(np.abs(decoded.astype(int) - RAMP)) < 1100  # one top-segment step


def test_plain_string_formats_work():
    # Session config may hand over the wire string rather than the enum member.
    assert decode("audio/pcmu", b"\xff").tolist() == [0]  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_empty_input(fmt):
    assert decode(fmt, b"").size == 0
    assert encode(fmt, np.zeros(0, np.int16)) == b""


def test_odd_pcm_byte_count_says_what_to_fix():
    with pytest.raises(AudioFormatError) as err:
        decode(AudioFormat.PCM, b"\x00" * 4001)
    assert str(err.value) == "audio/pcm needs a whole number of 2-byte samples; got 4001 bytes"
    assert isinstance(err.value, ValueError)


def test_encode_refuses_float_samples():
    with pytest.raises(TypeError, match="int16"):
        encode(AudioFormat.PCM, np.zeros(4, np.float32))
