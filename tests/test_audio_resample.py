import numpy as np
import pytest

from openrealtime.audio.resample import StreamResampler, resample

PAIRS = [(24000, 16000), (8000, 16000), (48000, 24000)]


def sine(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[np.argmax(spectrum)])


def stream(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample as a session does: 20 ms chunks, then a flush."""
    resampler = StreamResampler(in_rate, out_rate)
    chunk = in_rate // 50
    parts = [resampler.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    return np.concatenate([*parts, resampler.flush()])


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_one_shot_length_and_frequency(in_rate, out_rate):
    out = resample(sine(1000, in_rate), in_rate, out_rate)
    assert out.dtype == np.int16
    assert abs(len(out) - out_rate) <= 2
    assert abs(peak_hz(out, out_rate) - 1000) <= 2  # FFT bins are 1 Hz wide here
    assert 0.9 < np.abs(out[100:-100]).max() / 10000 < 1.1  # passband gain ~1


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_streaming_in_20ms_chunks_equals_one_shot(in_rate, out_rate):
    pcm = sine(1000, in_rate) + sine(3100, in_rate, amplitude=3000)
    streamed = stream(pcm, in_rate, out_rate)
    one_shot = resample(pcm, in_rate, out_rate)
    assert abs(len(streamed) - len(one_shot)) <= 2
    n = min(len(streamed), len(one_shot))
    assert np.abs(streamed[:n].astype(int) - one_shot[:n]).max() <= 2


def test_flush_leaves_the_resampler_ready_for_a_new_stream():
    resampler = StreamResampler(24000, 16000)
    pcm = sine(1000, 24000, seconds=0.5)
    first = np.concatenate([resampler.process(pcm), resampler.flush()])
    second = np.concatenate([resampler.process(pcm), resampler.flush()])
    np.testing.assert_array_equal(first, second)


def test_downsampling_removes_what_the_new_rate_cannot_carry():
    # 10 kHz is above 16 kHz's Nyquist frequency: it must be filtered out, not folded to 6 kHz.
    out = resample(sine(10000, 24000), 24000, 16000)
    assert np.abs(out[100:-100]).max() < 10


def test_equal_rates_are_the_identity():
    pcm = sine(1000, 24000, seconds=0.1)
    resampler = StreamResampler(24000, 24000)
    assert resampler.process(pcm) is pcm
    assert resampler.flush().size == 0
    assert resample(pcm, 16000, 16000) is pcm


def test_refuses_non_int16():
    with pytest.raises(TypeError, match="int16"):
        StreamResampler(24000, 16000).process(np.zeros(480, np.float32))
