"""The console page in a real headless Chromium, talking to the server over WebRTC.

Chromium's fake microphone plays a wav made here with hibari (a natural voice, as a person's
would be, rather than espeak's robotic one): a sentence, then silence long
enough for the answer to be heard before the file loops and the sentence comes round again (the
capture starts before the call connects, so the first pass may be heard only in part). The page mints its client secret at `POST /console/session`, calls
`POST /v1/realtime/calls`, and must show the user's transcript with the sentence's words (the
default recognizer, Whisper tiny.en), the assistant's, the event log, a turn's latency, and play
the assistant's audio in the default voice, hibari (measured in the page with a WebAudio analyser on the
remote track). A screenshot goes to `test-artifacts/`.

The translation mode is checked the same way: the fake microphone speaks Spanish (espeak-ng's
"es" voice), the page opens `/v1/realtime/translations/calls` and must show the input
transcript and its English translation in their panes and play the translated speech. There
the recognizer and the LLM are scripted (as in tests/test_translations.py: the default
recognizer is English-only), the VAD and the voice are the real ones.

CI installs Chromium (`apt-get install chromium`); Playwright drives it but cannot download a
browser of its own here, so it is launched from `/usr/bin/chromium`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import API_KEY
from scripted_llm import ScriptedLLM, Text
from servers import ServerThread
from speech_fixtures import speak, with_silence
from test_translations import HEARD, SPANISH, ScriptedTranscriber

from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SCREENSHOT = ARTIFACTS / "console.png"

pytestmark = [
    pytest.mark.realtime,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]

SENTENCE = "What is the weather like today?"
# The words the user's transcript must hold, as the page's check below normalizes them.
SENTENCE_WORDS = "what is the weather like today"
TRAILING_SILENCE_MS = 6000
ANSWER = ["It is sunny", " in Lisbon,", " and warm enough", " for a long walk."]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# The assistant's audio counts as heard above this RMS (about -40 dBFS); silence is ~0.
AUDIBLE_RMS = 0.01

# Everything the test waits for, read from the page's `window.__console`.
READY = """([audible, words]) => {
  const c = window.__console;
  const normal = (t) => t.toLowerCase().replace(/[^a-z' ]+/g, " ").trim().split(/\\s+/).join(" ");
  return !!c && c.phase === "live"
    && c.transcript("user").some((t) => normal(t) === words)
    && c.transcript("assistant").some((t) => t.trim().length > 0)
    && c.latencies.length > 0
    && c.events > 0
    && c.remotePeak > audible;
}"""
SNAPSHOT = """() => {
  const c = window.__console;
  return JSON.stringify({
    phase: c.phase, error: c.error, callId: c.callId, events: c.events,
    user: c.transcript("user"), assistant: c.transcript("assistant"),
    latencies: c.latencies, remotePeak: c.remotePeak, micPeak: c.micPeak,
    log: [...document.querySelectorAll("#log li .type")].slice(-40).map((n) => n.textContent),
    created: (c.recent.find((r) => r.event.type === "session.created") || {}).event,
  });
}"""


@pytest.fixture
def microphone(tmp_path: Path, backends: Backends) -> Path:
    async def spoken() -> bytes:
        return b"".join([c async for c in backends.tts.synthesize(SENTENCE, "heart")])

    assert backends.tts.name == "hibari"
    # Chromium's fake capture reads a 16-bit PCM wav at any rate and resamples it.
    rate = backends.tts.sample_rate
    speech = np.frombuffer(asyncio.run(spoken()), np.int16)
    pcm = with_silence(speech, 500, TRAILING_SILENCE_MS, rate)
    path = tmp_path / "microphone.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path


@pytest.fixture
def console_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings, backends)) as thread:
        yield thread


def test_console_talks_over_webrtc(
    console_server: ServerThread,
    llm: ScriptedLLM,
    microphone: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    server = console_server
    llm.script(*[Text(ANSWER, delay=0.05) for _ in range(5)])
    ARTIFACTS.mkdir(exist_ok=True)
    page_errors: list[str] = []

    with sync_playwright() as playwright:
        # A persistent context is how Playwright takes a --user-data-dir: a fresh one per run.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={microphone}"],
            viewport={"width": 1440, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(server.url + "/")
            page.fill("#instructions", "You are a terse weather assistant.")
            page.select_option("#voice", "verse")
            page.click("#start")
            try:
                page.wait_for_function(
                    READY, arg=[AUDIBLE_RMS, SENTENCE_WORDS], timeout=90_000, polling=100
                )
            except PlaywrightError:
                page.screenshot(path=str(SCREENSHOT))
                state = json.loads(page.evaluate(SNAPSHOT))
                pytest.fail(
                    f"the console did not finish a turn; screenshot {SCREENSHOT}; "
                    f"page state {json.dumps(state, indent=1)}; page errors {page_errors}"
                )
            state = json.loads(page.evaluate(SNAPSHOT))
            page.screenshot(path=str(SCREENSHOT))
            with capsys.disabled():
                print(f"\nconsole screenshot: {SCREENSHOT}")

            # What a person sees, not only what the page measured.
            assert page.locator("#status").get_attribute("data-phase") == "live"
            user_bubbles = page.locator(".turn.user .bubble").all_inner_texts()
            heard = [" ".join(re.findall(r"[a-z']+", b.lower())) for b in user_bubbles]
            assert SENTENCE_WORDS in heard, user_bubbles
            assert page.locator(".turn.assistant .bubble").first.inner_text().strip()
            assert page.locator("#log li").count() > 0
            assert page.locator("#log time").first.inner_text()
            latency = page.locator("#latency-last").inner_text()
            assert latency.isdigit() and int(latency) > 0, latency
            assert page.locator(".turn.assistant .badge", has_text=" ms").count() > 0
            assert page.locator("#error").is_hidden()
            assert not page_errors, page_errors

            # The session is the one the console minted, and the scripted model answered it.
            assert state["callId"] and state["callId"].startswith("rtc_")
            # "verse" is spoken by the server's synthesizer, hibari, and was heard in the page.
            assert state["created"]["session"]["audio"]["output"]["voice"] == "verse"
            assert state["remotePeak"] > AUDIBLE_RMS
            assert "".join(ANSWER) in state["assistant"], state["assistant"]
            first = llm.requests[0]
            assert first["messages"][0] == {
                "role": "system",
                "content": "You are a terse weather assistant.",
            }

            # Stop hangs up: the page says so, and the server lets the call go.
            page.click("#stop")
            page.wait_for_function("() => window.__console.phase === 'stopped'", timeout=10_000)
            page.wait_for_selector("#log li .type:text('hangup: HTTP 200')", timeout=10_000)
            gone = httpx.post(
                f"{server.url}/v1/realtime/calls/{state['callId']}/hangup",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert gone.status_code == 404, gone.text
        finally:
            context.close()


TRANSLATED = "Hello, how are you?"
TRANSLATION_READY = """([audible, heard, translated]) => {
  const c = window.__console;
  return !!c && c.mode === "translation" && c.phase === "live"
    && c.source.includes(heard) && c.target.includes(translated) && c.remotePeak > audible;
}"""
TRANSLATION_SNAPSHOT = """() => {
  const c = window.__console;
  return JSON.stringify({
    mode: c.mode, phase: c.phase, error: c.error, callId: c.callId, source: c.source,
    target: c.target, remotePeak: c.remotePeak, micPeak: c.micPeak,
    log: [...document.querySelectorAll("#log li .type")].slice(-40).map((n) => n.textContent),
  });
}"""


@pytest.fixture
def spanish_microphone(tmp_path: Path) -> Path:
    rate = 24_000
    pcm = with_silence(speak(SPANISH[0], rate, voice="es"), 500, TRAILING_SILENCE_MS, rate)
    path = tmp_path / "spanish.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path


@pytest.fixture
def translation_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    stt = ScriptedTranscriber()
    stt.texts = [HEARD[0]] * 10  # the fake microphone loops: each pass is heard the same
    with ServerThread(
        create_app(settings, dataclasses.replace(backends, stt=stt, translation_stt=None))
    ) as thread:
        yield thread


def test_console_translates_over_webrtc(
    translation_server: ServerThread,
    llm: ScriptedLLM,
    spanish_microphone: Path,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    server = translation_server
    llm.script(*[Text(["Hello, ", "how are you?"]) for _ in range(10)])
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "console-translation.png"
    page_errors: list[str] = []

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={spanish_microphone}"],
            viewport={"width": 1440, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(server.url + "/")
            assert page.locator("#translation").is_hidden()
            page.check('input[name="mode"][value="translation"]')
            assert page.locator("#language").is_visible()
            assert page.locator("#instructions").is_hidden()
            page.select_option("#language", "en")
            page.click("#start")
            try:
                page.wait_for_function(
                    TRANSLATION_READY,
                    arg=[AUDIBLE_RMS, HEARD[0], TRANSLATED],
                    timeout=90_000,
                    polling=100,
                )
            except PlaywrightError:
                page.screenshot(path=str(screenshot))
                state = json.loads(page.evaluate(TRANSLATION_SNAPSHOT))
                pytest.fail(
                    f"the console did not translate; screenshot {screenshot}; "
                    f"page state {json.dumps(state, indent=1)}; page errors {page_errors}"
                )
            state = json.loads(page.evaluate(TRANSLATION_SNAPSHOT))
            page.screenshot(path=str(screenshot))

            # What a person sees: both panes, the conversation view put away.
            assert HEARD[0] in page.locator("#source-text").inner_text()
            assert TRANSLATED in page.locator("#target-text").inner_text()
            assert page.locator("#transcript").is_hidden()
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
            assert not page_errors, page_errors
            # The secret the console minted asked for English, with the input transcript on.
            assert "English" in llm.last_request["messages"][0]["content"]
            assert state["remotePeak"] > AUDIBLE_RMS

            page.click("#stop")
            page.wait_for_function("() => window.__console.phase === 'stopped'", timeout=10_000)
            page.wait_for_selector("#log li .type:text('hangup: HTTP 200')", timeout=10_000)
            gone = httpx.post(
                f"{server.url}/v1/realtime/translations/calls/{state['callId']}/hangup",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert gone.status_code == 404, gone.text
        finally:
            context.close()
