import numpy as np
import pytest

from openrealtime.backends.vad.base import VoiceActivityDetector
from openrealtime.backends.vad.silero import SileroVad

RATE = 16000
# F1, F2, F3 (Hz) of a few vowels: /a/ /i/ /u/ /e/ /o/ /ʌ/.
VOWELS = np.array(
    [
        (730, 1090, 2440),
        (270, 2290, 3010),
        (300, 870, 2240),
        (530, 1840, 2480),
        (570, 840, 2410),
        (440, 1020, 2240),
    ],
    dtype=float,
)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A crude talker, numpy only: voiced syllables at ~4 per second.

    Each syllable is a short noise burst (a consonant) then a vowel: harmonics of a falling,
    jittered ~120 Hz pitch, shaped by three formants gliding towards the next vowel. A steady
    buzz is not enough: Silero stops believing it within a second.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope, hiss_envelope, f0 = np.zeros(n), np.zeros(n), np.zeros(n)
    formants = np.zeros((n, 3))
    start = 0
    while start < n:
        end = min(start + int(rng.uniform(0.18, 0.32) * RATE), n)
        u = np.linspace(0, 1, end - start, endpoint=False)
        onset = rng.uniform(0.1, 0.25)  # the consonant's share of the syllable
        envelope[start:end] = np.clip((u - onset) / 0.08, 0, 1) * np.clip((1 - u) / 0.25, 0, 1)
        hiss_envelope[start:end] = (
            (u < onset) * np.sin(np.pi * u / onset) ** 2 * rng.uniform(0, 0.3)
        )
        pitch = 140 - 30 * start / n  # declination over the utterance
        f0[start:end] = pitch * (1 + rng.uniform(-0.15, 0.15) * u + 0.05 * np.sin(np.pi * u))
        v0, v1 = VOWELS[rng.integers(len(VOWELS), size=2)]
        formants[start:end] = v0 + (v1 - v0) * (u**2)[:, None]
        start = end
    f0 *= 1 + 0.0002 * rng.standard_normal(n).cumsum()  # slow random wander
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        gain = sum(
            weight / np.sqrt(1 + ((fk - formants[:, j]) / (bandwidth / 2)) ** 2)
            for j, (bandwidth, weight) in enumerate([(90, 1.0), (110, 0.6), (150, 0.3)])
        )
        voiced += gain / k * (fk < RATE / 2 - 300) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    hiss = np.diff(rng.standard_normal(n + 1))  # high-passed noise, a fricative
    out = voiced * envelope / np.abs(voiced * envelope).max() + hiss * hiss_envelope
    return (out / np.abs(out).max() * 0.3 * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def test_implements_the_protocol(vad):
    detector: VoiceActivityDetector = vad
    assert (detector.name, detector.sample_rate, detector.frame_samples) == ("silero", 16000, 512)


def test_silence_and_low_noise_are_not_speech(vad):
    rng = np.random.default_rng(1)
    for pcm in (
        np.zeros(RATE * 2, np.int16),
        (rng.standard_normal(RATE * 2) * 300).astype(np.int16),
    ):
        probs = vad.new_stream().process(pcm)
        assert len(probs) == len(pcm) // 512
        assert max(probs) < 0.2


def test_a_steady_tone_is_not_speech(vad):
    tone = (np.sin(2 * np.pi * 440 * np.arange(RATE * 2) / RATE) * 10000).astype(np.int16)
    assert max(vad.new_stream().process(tone)) < 0.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speech_like_signal_is_speech(vad, seed):
    probs = np.array(vad.new_stream().process(speech_like(4.0, seed)))
    middle = probs[10:-5]  # skip the first ~0.3 s while the model warms up
    assert np.mean(middle > 0.5) > 0.9


def test_chunking_does_not_change_the_probabilities(vad):
    pcm = speech_like(2.0)
    whole = vad.new_stream().process(pcm)
    stream = vad.new_stream()
    chunked = [p for i in range(0, len(pcm), 320) for p in stream.process(pcm[i : i + 320])]
    assert len(chunked) == len(whole) == len(pcm) // 512
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_partial_frame_is_kept_until_complete(vad):
    stream = vad.new_stream()
    assert stream.process(np.zeros(511, np.int16)) == []
    assert len(stream.process(np.zeros(1, np.int16))) == 1
    assert stream.process(np.zeros(0, np.int16)) == []


def test_reset_starts_over(vad):
    pcm = speech_like(1.0)
    stream = vad.new_stream()
    first = stream.process(pcm[:1000])
    stream.process(pcm[1000:])
    stream.reset()
    # The 1000-sample chunk holds one frame; after reset the leftover 488 samples are gone too.
    assert stream.process(pcm[:1000]) == first


def test_streams_are_independent(vad):
    speech, silence = speech_like(1.0), np.zeros(RATE, np.int16)
    a, b = vad.new_stream(), vad.new_stream()
    alone = vad.new_stream().process(speech)
    interleaved_a, interleaved_b = [], []
    for i in range(0, RATE, 320):
        interleaved_a += a.process(speech[i : i + 320])
        interleaved_b += b.process(silence[i : i + 320])
    assert interleaved_a == alone
    assert max(interleaved_b) < 0.2


def test_one_model_per_process():
    assert SileroVad()._session is SileroVad()._session
