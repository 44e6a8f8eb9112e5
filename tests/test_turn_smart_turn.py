"""Smart Turn v3.2: features identical to pipecat's, the vendored model loads and answers from
worker threads, and on hibari speech a finished sentence scores above the same one cut short."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import pytest
import soxr

from openrealtime.backends.turn.features import (
    N_FRAMES,
    N_MELS,
    WINDOW_SAMPLES,
    last_window,
    log_mel,
)
from openrealtime.backends.turn.smart_turn import SmartTurn

RATE = 16_000


def tone() -> np.ndarray:
    """3 s of a gliding harmonic tone under a moving envelope, plus a chirp: no RNG, no TTS."""
    t = np.arange(3 * RATE) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.exp(-t / 2.0) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)
    chirp = 0.05 * np.sin(2 * np.pi * (200 * t + 900 * t**2))
    return np.round(8000 * (voice * envelope + chirp)).astype(np.int16)


# Recorded from pipecat-ai 1.14.0's compute_whisper_log_mel_features on tone() padded as
# its LocalSmartTurnAnalyzerV3 pads it, and the model's output on those features. Frames 0-499
# are the silence padded before the 3 s of signal.
BANDS = [0, 5, 15, 25, 40, 55, 70, 79]
FRAMES = [0, 499, 500, 520, 600, 650, 730, 799]
PIPECAT_FEATURES = [
    [0.00937, 0.90950, 1.60510, 0.85877, 1.51537, 0.82830, 1.28223, 0.73101],
    [-0.14153, 0.86558, 1.48327, 1.49051, 1.46158, 1.37639, 1.36854, 1.14018],
    [-0.14153, 0.69126, 1.28843, 1.51431, 1.24248, 0.91984, 1.13429, 1.08364],
    [-0.14153, 0.60520, 1.18951, 1.12915, 0.79430, 1.09481, 1.05154, 0.96890],
    [-0.14153, 0.40773, 0.90583, 1.10106, -0.14153, -0.14153, -0.14153, -0.06513],
    [-0.14153, 0.11091, 0.61071, -0.14153, -0.14153, 0.54937, -0.14153, -0.14153],
    [-0.14153, -0.09284, 0.40695, -0.14153, -0.14153, -0.14153, -0.14153, 1.00959],
    [-0.14153, -0.14153, 0.34767, -0.14153, -0.14153, -0.14153, -0.14153, -0.14153],
]
PIPECAT_MEAN = 0.10110658407211304
PIPECAT_PROBABILITY = 0.011094629764556885
# The file in the pipecat-ai 1.14.0 wheel, unchanged.
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn()


def test_features_match_pipecat() -> None:
    features = log_mel(last_window(tone()))
    assert features.shape == (N_MELS, N_FRAMES)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features[np.ix_(BANDS, FRAMES)], PIPECAT_FEATURES, atol=2e-5)
    assert float(features.mean()) == pytest.approx(PIPECAT_MEAN, abs=1e-6)


def test_probability_matches_pipecat(model: SmartTurn) -> None:
    assert model.probability_complete(tone()) == pytest.approx(PIPECAT_PROBABILITY, abs=1e-5)


def test_only_the_last_eight_seconds_count(model: SmartTurn) -> None:
    turn = np.tile(tone(), 3)  # 9 s
    window = last_window(turn)
    assert len(window) == WINDOW_SAMPLES
    np.testing.assert_array_equal(window * 32768.0, turn[-WINDOW_SAMPLES:])
    earlier = np.concatenate([np.full(RATE, 5000, np.int16), turn])
    assert model.probability_complete(earlier) == model.probability_complete(turn)


def test_short_and_empty_turns_are_padded(model: SmartTurn) -> None:
    for pcm in (np.zeros(0, np.int16), np.zeros(100, np.int16), tone()[:RATE]):
        assert 0.0 <= model.probability_complete(pcm) <= 1.0
    window = last_window(tone()[:RATE])
    assert not window[: WINDOW_SAMPLES - RATE].any()


def test_rejects_audio_that_is_not_int16(model: SmartTurn) -> None:
    with pytest.raises(TypeError, match="int16"):
        model.probability_complete(tone().astype(np.float32))


def test_model_and_licence_are_vendored() -> None:
    data = resources.files("openrealtime.backends.vad").joinpath("data")
    onnx = data.joinpath("smart-turn-v3.2-cpu.onnx").read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == SMART_TURN_SHA256
    licence = data.joinpath("SMART_TURN_LICENSE").read_text(encoding="utf-8")
    assert "BSD 2-Clause License" in licence and "2026, Daily" in licence


def test_worker_threads_and_batches_agree_with_single_calls(model: SmartTurn) -> None:
    signal = tone()
    turns = [signal[: RATE * k] for k in (1, 2, 3)] + [signal[::-1].copy()]
    single = [model.probability_complete(t) for t in turns]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(model.probability_complete, turns))
    assert threaded == pytest.approx(single, abs=1e-6)
    assert model.probabilities_complete(turns) == pytest.approx(single, abs=1e-5)
    assert len(set(np.round(single, 4))) > 1  # the inputs are told apart
    assert len(model.probabilities_complete([])) == 0


# Synthetic speech ------------------------------------------------------------------------------

SENTENCES = [
    "I would like to book a table for two people tonight.",
    "Can you tell me what the weather is like in Paris?",
    "Please turn off the lights in the kitchen.",
    "My favourite colour has always been blue.",
]


def hibari_16k(text: str) -> np.ndarray:
    from openrealtime.backends.tts.hibari import HibariSynthesizer

    synth = HibariSynthesizer()

    async def collect() -> bytes:
        return b"".join([c async for c in synth.synthesize(text, "heart")])

    pcm = np.frombuffer(asyncio.run(collect()), np.int16)
    return np.asarray(soxr.resample(pcm, synth.sample_rate, RATE), dtype=np.int16)


def test_finished_hibari_sentences_score_above_the_same_sentences_cut_short(
    model: SmartTurn,
) -> None:
    # On espeak audio this does not hold (it scores cut phrases as finished too), and on TTS
    # audio in general a phrase cut at a word boundary sounds finished; a cut mid-phrase, in the
    # middle of the sound, is what hibari's audio shows robustly. 200 ms of silence follow each,
    # as at a pause.
    pause = np.zeros(RATE // 5, np.int16)
    complete, cut = [], []
    for text in SENTENCES:
        speech = hibari_16k(text)
        complete.append(model.probability_complete(np.concatenate([speech, pause])))
        cut.append(
            model.probability_complete(np.concatenate([speech[: len(speech) * 6 // 10], pause]))
        )
    assert all(c > 0.9 for c in complete), complete
    assert all(c > k for c, k in zip(complete, cut, strict=True)), (complete, cut)
    assert np.mean(complete) - np.mean(cut) > 0.3, (complete, cut)
