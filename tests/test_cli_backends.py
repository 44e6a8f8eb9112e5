"""A configuration that cannot work is refused before the server starts: one line on stderr
that says what to change, and exit status 2 — for a backend name no backend has, an option the
chosen backend needs, a package it needs that is not installed, and any invalid setting. The
real command runs in a subprocess. Then the models a good configuration names load side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from servers import free_port

from openrealtime.backends.errors import BackendError
from openrealtime.backends.registry import Backends, check_settings
from openrealtime.config import Settings

# Makes `import faster_whisper` fail as if the package were not installed (it is, for tests).
BLOCK_WHISPER = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "faster_whisper":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `openrealtime serve ARGS` on a free port; return its stderr lines after it exits 2."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    result = subprocess.run(
        [sys.executable, "-m", "openrealtime", "serve", "--port", str(free_port()), *args],
        env=clean | (env or {}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    return result.stderr.splitlines()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--stt", "nope"],
            "unknown --stt 'nope'; choose one of: faster-whisper, pocketsphinx, openai",
        ),
        (["--tts", "nope"], "unknown --tts 'nope'; choose one of: hibari, espeak, openai"),
        (["--llm", "nope"], "unknown --llm 'nope'; choose one of: openai"),
        (["--vad", "nope"], "unknown --vad 'nope'; choose one of: silero"),
        (["--stt", "openai"], "--stt-base-url is required for --stt openai"),
        (["--tts", "openai"], "--tts-base-url is required for --tts openai"),
    ],
    ids=["stt", "tts", "llm", "vad", "stt_base_url", "tts_base_url"],
)
def test_a_bad_backend_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    assert _serve(tmp_path, *args) == [f"openrealtime: {says}"]


def test_a_bad_backend_from_the_environment_is_refused_the_same_way(tmp_path: Path) -> None:
    lines = _serve(tmp_path, env={"OPENREALTIME_TTS": "nope"})
    assert lines == ["openrealtime: unknown --tts 'nope'; choose one of: hibari, espeak, openai"]


def test_a_missing_package_names_the_install_command(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_WHISPER)
    path = os.pathsep.join([str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])])
    lines = _serve(tmp_path, "--stt", "faster-whisper", env={"PYTHONPATH": path})
    assert lines == [
        "openrealtime: --stt faster-whisper: the 'faster-whisper' package is not installed. "
        "Install it with: pip install faster-whisper"
    ]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--port", "x"], {}, "argument --port: invalid int value: 'x'"),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml'"),
        ([], {"OPENREALTIME_MAX_SESSIONS": "many"}, "invalid --max-sessions"),
        (["--stt-beam-size", "0"], {}, "invalid --stt-beam-size"),
    ],
    ids=["flag_type", "flag_choice", "environment", "beam_size"],
)
def test_an_invalid_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    [line] = _serve(tmp_path, *args, env=env)
    assert says in line and "Traceback" not in line


def test_the_default_backends_pass_the_check() -> None:
    check_settings(Settings())


def test_the_check_names_what_to_change() -> None:
    with pytest.raises(BackendError) as refused:
        check_settings(Settings(stt="whisper"))
    assert refused.value.backend == "stt"
    assert "choose one of: faster-whisper, pocketsphinx, openai" in refused.value.message


def test_the_recognizer_and_the_voice_load_side_by_side() -> None:
    """Start-up waits for about the longer of the two loads, not their sum: each load below
    returns only once the other has started."""
    both_loading = threading.Barrier(2, timeout=10)
    loaded: list[str] = []

    class Loads:
        def __init__(self, name: str) -> None:
            self.name = name

        def load(self) -> None:
            both_loading.wait()
            loaded.append(self.name)

    backends = Backends(
        llm=cast(Any, None),
        stt=cast(Any, Loads("stt")),
        tts=cast(Any, Loads("tts")),
        vad=cast(Any, None),
    )
    backends.load()
    assert sorted(loaded) == ["stt", "tts"]


@pytest.mark.parametrize(
    ("flag", "expected"), [([], True), (["--stt-short-window", "false"], False)]
)
def test_the_short_whisper_window_is_the_default_and_one_flag_turns_it_off(
    flag: list[str], expected: bool
) -> None:
    from openrealtime.backends.registry import TRANSCRIBERS
    from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
    from openrealtime.cli import parse_settings

    settings = parse_settings(["serve", *flag])
    transcriber = TRANSCRIBERS["faster-whisper"].build(settings)  # built, not loaded
    assert isinstance(transcriber, FasterWhisperTranscriber)
    assert transcriber.short_window is expected


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ([], {}, 5),
        (["--stt-beam-size", "3"], {}, 3),
        ([], {"OPENREALTIME_STT_BEAM_SIZE": "2"}, 2),
    ],
    ids=["default", "flag", "environment"],
)
def test_the_whisper_beam_size_is_one_flag_or_variable_away(
    monkeypatch: pytest.MonkeyPatch, flag: list[str], env: dict[str, str], expected: int
) -> None:
    from openrealtime.backends.registry import TRANSCRIBERS
    from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
    from openrealtime.cli import parse_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = parse_settings(["serve", *flag])
    transcriber = TRANSCRIBERS["faster-whisper"].build(settings)  # built, not loaded
    assert isinstance(transcriber, FasterWhisperTranscriber)
    assert transcriber.beam_size == expected
