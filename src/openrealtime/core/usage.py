"""Token usage, as OpenAI reports it: backend counts where given, estimates otherwise.

Audio is counted as OpenAI bills it: user audio 1 token per 100 ms, assistant audio 1 token per
50 ms. Text without a backend count is estimated at 4 characters per token. Images count as the
backend reports them; a backend that reports only a total prompt count has the estimate
(`images.py`) taken out of that total, so the total stays the backend's.
"""

from __future__ import annotations

import math
from typing import Any

INPUT_AUDIO_MS_PER_TOKEN = 100
OUTPUT_AUDIO_MS_PER_TOKEN = 50


def tokens_for_chars(chars: int) -> int:
    return math.ceil(chars / 4)


def estimate_text_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


def input_audio_tokens(ms: float) -> int:
    return math.ceil(ms / INPUT_AUDIO_MS_PER_TOKEN)


def output_audio_tokens(ms: float) -> int:
    return math.ceil(ms / OUTPUT_AUDIO_MS_PER_TOKEN)


def response_usage(
    backend: Any, *, output_text: str, output_audio_ms: float, input_estimate: dict[str, int]
) -> dict[str, Any]:
    """`backend` is the LLM's `Usage`, or None when it reported none."""
    input_audio = input_estimate.get("audio_tokens", 0)
    input_image = input_estimate.get("image_tokens", 0)
    if backend is not None:
        if backend.image_tokens is not None:
            input_image = backend.image_tokens
        input_image = min(input_image, backend.input_tokens)
        input_text = backend.input_tokens - input_image
        output_text_tokens = backend.output_tokens
        cached = backend.cached_tokens
    else:
        input_text = input_estimate.get("text_tokens", 0)
        output_text_tokens = estimate_text_tokens(output_text)
        cached = 0
    output_audio = output_audio_tokens(output_audio_ms)
    input_tokens = input_text + input_audio + input_image
    output_tokens = output_text_tokens + output_audio
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": input_image,
            "cached_tokens": cached,
            "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text_tokens, "audio_tokens": output_audio},
    }
