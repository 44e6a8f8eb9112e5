"""Image input (`input_image` content): checked before an item is stored, estimated for usage.

Rules:
- An image is a base64 data URL of a PNG or JPEG (`data:image/png;base64,...`), as OpenAI
  documents for the Realtime API; other URLs are refused, since the server fetches nothing.
- At most MAX_IMAGE_BYTES decoded (10 MiB: with its base64 it fits in one client event, under
  the transport's 21 MiB limit, with room for the rest of the item).
- The bytes must be a PNG or JPEG whose header gives the picture's size: an image the LLM
  endpoint would refuse mid-turn is refused here, when the client can still fix it.
- With an LLM that reads no images (`--llm-vision false`) an image item is refused, never
  stored with its picture silently dropped.
- Image tokens, when the backend reports none, are estimated with OpenAI's published rule:
  85 for `detail: "low"`; otherwise the picture is scaled down to fit 2048x2048, then down
  until its short side is at most 768, and each 512-pixel tile costs 170 more.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.items import MessageItem

MAX_IMAGE_BYTES = 10 * 1024 * 1024
_MEDIA_TYPES = ("image/png", "image/jpeg", "image/jpg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Enough of the decoded file to reach a JPEG's frame header past an EXIF segment (64 KiB).
_HEADER_PREFIX_CHARS = 4 * 24 * 1024
_LOW_DETAIL_TOKENS = 85
_TILE_TOKENS = 170


def check_item_images(item: object, param: str, *, vision: bool) -> None:
    """Raise ProtocolError for the first image content of `item` the LLM could not take."""
    if not isinstance(item, MessageItem):
        return
    for index, part in enumerate(item.content):
        if part.type != "input_image":
            continue
        where = f"{param}.content[{index}].image_url"
        if not vision:
            raise ProtocolError(
                "The language model behind this server does not read images (it runs with "
                "--llm-vision false); send the content as input_text instead.",
                errors.IMAGE_NOT_SUPPORTED,
                where,
            )
        check_image_url(part.image_url, where)


def check_image_url(url: str | None, param: str) -> tuple[int, int]:
    """The picture's (width, height); ProtocolError if it is no usable image."""
    if not url:
        raise ProtocolError(
            "An input_image content part needs 'image_url', a data URL such as "
            "'data:image/png;base64,...'.",
            errors.MISSING_PARAMETER,
            param,
        )
    media_type, data = _split_data_url(url, param)
    if len(data) * 3 // 4 > MAX_IMAGE_BYTES + 2:
        raise _too_large(param)
    try:
        # strict_mode: binascii's own check (b64decode's `validate` runs a regex, ~100x slower)
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _invalid(param, "its base64 data does not decode") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise _too_large(param)
    size = image_size(raw)
    if size is None:
        raise _invalid(param, f"the bytes are not a readable {media_type.split('/')[1].upper()}")
    return size


def image_tokens(url: str | None, detail: str | None) -> int:
    """Estimated input tokens of one image (OpenAI's rule, see the module's docstring)."""
    if detail == "low":
        return _LOW_DETAIL_TOKENS
    size = _header_size(url or "")
    if size is None:
        return _LOW_DETAIL_TOKENS
    fit = min(1.0, 2048 / max(size))
    fit *= min(1.0, 768 / (min(size) * fit))
    tiles = math.ceil(size[0] * fit / 512) * math.ceil(size[1] * fit / 512)
    return _LOW_DETAIL_TOKENS + _TILE_TOKENS * tiles


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None if `raw` is neither."""
    if raw.startswith(_PNG_SIGNATURE) and raw[12:16] == b"IHDR" and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return (width, height) if width and height else None
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_size(raw)
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(raw):
        if raw[position] != 0xFF:
            return None
        marker = raw[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack(">H", raw[position + 2 : position + 4])
        # Start-of-frame markers (all but DHT C4, JPG C8, DAC CC) hold the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if position + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[position + 5 : position + 9])
            return (width, height) if width and height else None
        if length < 2:
            return None
        position += 2 + length
    return None


def _header_size(url: str) -> tuple[int, int] | None:
    """The size from the start of a data URL's bytes, without decoding all of them."""
    start = url.find(",") + 1  # slicing, not partition: no copy of a 10 MiB string
    prefix = url[start : start + _HEADER_PREFIX_CHARS]
    try:
        return image_size(base64.b64decode(prefix[: len(prefix) // 4 * 4]))
    except (binascii.Error, ValueError):
        return None


def _split_data_url(url: str, param: str) -> tuple[str, str]:
    head, comma, data = url.partition(",")
    if not head.startswith("data:") or not comma:
        raise ProtocolError(
            "image_url must be a data URL with the image inline, such as "
            "'data:image/png;base64,...'; the server fetches no URLs.",
            errors.INVALID_IMAGE,
            param,
        )
    media_type, _, encoding = head[5:].partition(";")
    if media_type.lower() not in _MEDIA_TYPES or encoding.lower() != "base64":
        raise ProtocolError(
            f"Unsupported image data URL '{head}'; send a PNG or JPEG as "
            "'data:image/png;base64,...' or 'data:image/jpeg;base64,...'.",
            errors.INVALID_IMAGE,
            param,
        )
    return media_type.lower(), data


def _too_large(param: str) -> ProtocolError:
    return ProtocolError(
        f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB; scale it down or "
        "compress it before sending.",
        errors.IMAGE_TOO_LARGE,
        param,
    )


def _invalid(param: str, why: str) -> ProtocolError:
    return ProtocolError(
        f"The image could not be read: {why}. Send a PNG or JPEG as a base64 data URL.",
        errors.INVALID_IMAGE,
        param,
    )
