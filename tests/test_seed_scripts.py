"""The seed tutorials' scripts, run unchanged but for the URL and key, against openrealtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import API_KEY
from scripted_llm import Text

SEEDS = Path(__file__).parent / "seeds"
# The tutorials live in shared/, beside the repository's checkout.
SEED1_TUTORIAL = Path(__file__).resolve().parents[2] / "shared/seeds/000_897dde7a8c3c30e5.txt"

SEED1_INSTRUCTIONS = (
    "You are a concise Python assistant. "
    "Answer in short paragraphs and end with one practical next step."
)
SEED1_QUESTION = (
    "Explain when a Python backend should use WebSocket "
    "instead of WebRTC for the OpenAI Realtime API."
)


def test_seed1_websocket_client_text_script_streams_the_answer(server, llm, tmp_path) -> None:
    answer = ["Use WebSocket ", "from a secure backend; ", "WebRTC in browsers. ", "Next: try it."]
    llm.script(Text(answer))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENREALTIME_"))}
    env |= {
        "OPENAI_API_KEY": API_KEY,
        "OPENREALTIME_URL": f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime",
        "PYTHONUNBUFFERED": "1",
    }
    result = subprocess.run(
        [sys.executable, str(SEEDS / "seed1_text_script.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = result.stdout
    assert result.returncode == 0, (out, result.stderr)
    assert out.startswith("Connected to Realtime API.\n"), out
    assert "".join(answer) + "\n\nResponse complete." in out
    assert "Realtime error" not in out and "WebSocket error" not in out
    assert "Socket closed:" in out  # the script closed the socket itself after response.done
    assert llm.last_request["messages"] == [
        {"role": "system", "content": SEED1_INSTRUCTIONS},
        {"role": "user", "content": SEED1_QUESTION},
    ]
    assert len(llm.requests) == 1


def test_seed1_copy_is_the_tutorial_code_but_for_the_url_line() -> None:
    """The scraped tutorial lost its indentation; the committed copy restores it and changes
    only the URL line. Compared line by line, indentation and blank lines aside."""
    if not SEED1_TUTORIAL.exists():
        pytest.skip(f"{SEED1_TUTORIAL} is not available here")
    tutorial = SEED1_TUTORIAL.read_text().splitlines()
    start = tutorial.index("A minimal text-first script looks like this:") + 1
    end = tutorial.index("When you run it, the sequence is straightforward:")
    expected = [line.strip() for line in tutorial[start:end] if line.strip()]
    url_line = 'URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"'
    assert url_line in expected
    expected[expected.index(url_line)] = 'URL = os.environ["OPENREALTIME_URL"]'
    copy = (SEEDS / "seed1_text_script.py").read_text().splitlines()
    assert [line.strip() for line in copy if line.strip()] == expected
