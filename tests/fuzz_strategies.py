"""Hypothesis strategies for client events, derived from the protocol's own pydantic models, and
the mutations that break them. Used by test_fuzz.py.

`event_objects` is built by walking each client event class's `model_json_schema()` (so a field
added to `protocol/client_events.py` is fuzzed without touching this file), with a few leaves
replaced by values that reach deeper into the session: base64 audio, item ids from a small shared
pool so that events refer to each other, real voice names. `frames()` then either keeps an event,
breaks it (wrong types, missing or unknown fields, huge strings, deep nesting, bad base64, odd
byte counts, a wrong `type`, a bad `event_id`, odd numbers), or makes something that is not an
event at all (binary frames, broken JSON, JSON that is not an object).

A frame holds a Python value and how to put it on the wire; the test swaps the `EVENT_ID`
placeholder for a unique id just before sending, so every reply can be traced to its frame.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import typing
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from openrealtime.protocol import client_events as ce
from openrealtime.protocol.errors import ProtocolError

EVENT_ID = "\x00event-id\x00"  # replaced by a unique id before sending

# Items made before the fuzzing that must survive it; events may name them, but never delete them.
ANCHOR_TEXT_ID = "anchor_text"
ANCHOR_AUDIO_ID = "anchor_audio"
ANCHOR_IDS = (ANCHOR_TEXT_ID, ANCHOR_AUDIO_ID)
# Ids the fuzzer itself may create, so that later events in a batch find (or miss) them.
FUZZ_IDS = ("fz_1", "fz_2")
VOICES = ("alloy", "marin", "cedar", "no-such-voice")

EVENT_CLASSES: dict[str, Any] = {
    cls.model_fields["type"].annotation.__args__[0]: cls
    for cls in typing.get_args(typing.get_args(ce.ClientEvent)[0])
}
assert set(EVENT_CLASSES) == set(ce.EVENT_TYPES)


# --- small values ------------------------------------------------------------------------------

short_text = st.text(max_size=12)
json_scalars = (
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6) | short_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(short_text, inner, max_size=2),
    max_leaves=4,
)


def audio_bytes(n_bytes: int, seed: int) -> bytes:
    """Quiet noise as PCM16: cheap to transcribe (loud noise costs pocketsphinx ~0.5 s)."""
    rng = random.Random(seed)
    return struct.pack(f"<{n_bytes // 2}h", *(rng.randint(-50, 50) for _ in range(n_bytes // 2)))


# 0, 10, 100 and 200 ms of 24 kHz PCM16 (100 ms is the least a commit takes).
pcm_base64 = st.builds(
    lambda n, seed: base64.b64encode(audio_bytes(n, seed)).decode(),
    st.sampled_from([0, 480, 4800, 9600]),
    st.integers(0, 3),
)

# Leaf strings replaced by name: the schema says "string", the session needs more to go on.
LEAF_STRINGS: dict[str, st.SearchStrategy[Any]] = {
    "audio": pcm_base64,
    "item_id": st.one_of(st.sampled_from(FUZZ_IDS), st.sampled_from(FUZZ_IDS), short_text),
    "previous_item_id": st.sampled_from((*ANCHOR_IDS, *FUZZ_IDS, "root")) | short_text,
    "id": st.sampled_from((*ANCHOR_IDS, *FUZZ_IDS)) | short_text,
    "voice": st.sampled_from(VOICES),
    "event_id": st.just(EVENT_ID),
    # Any string is stored and echoed, but the beta SDK's session type takes only OpenAI's names.
    "model": st.sampled_from(["gpt-realtime", "gpt-4o-realtime-preview"]),
}


# --- from a JSON schema to a strategy --------------------------------------------------------


def from_schema(
    schema: dict[str, Any], defs: dict[str, Any], name: str | None = None
) -> st.SearchStrategy[Any]:
    """Values valid against `schema` (pydantic's JSON schema dialect), kept small."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(sub, defs, name) for sub in schema[key]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        if properties:
            required = set(schema.get("required", ()))
            strategies = {key: from_schema(sub, defs, key) for key, sub in properties.items()}
            optional = sorted(set(strategies) - required)
            # At most a few optional fields per object: a session has dozens, nested.
            return (
                st.sets(st.sampled_from(optional), max_size=3).flatmap(
                    lambda chosen: st.fixed_dictionaries(
                        {k: s for k, s in strategies.items() if k in required or k in chosen}
                    )
                )
                if optional
                else st.fixed_dictionaries(strategies)
            )
        extra = schema.get("additionalProperties", True)
        values = json_values if extra is True else from_schema(extra, defs)
        return st.dictionaries(short_text, values, max_size=min(schema.get("maxProperties", 2), 2))
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, name)
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", 2), 2)))
    if kind == "string":
        if name in LEAF_STRINGS:
            return LEAF_STRINGS[name]
        return st.text(max_size=min(schema.get("maxLength", 12), 12))
    if kind == "integer":
        low = schema.get("minimum", -1000)
        return st.integers(low, schema.get("maximum", low + 100_000))
    if kind == "number":
        return st.floats(
            schema.get("minimum", -1e6),
            schema.get("maximum", 1e6),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values  # no constraint: any JSON


def _event_schema(cls: Any) -> st.SearchStrategy[dict[str, Any]]:
    schema = cls.model_json_schema()
    return from_schema(schema, schema.get("$defs", {}))


# Hand-written shapes mirroring MessageItem's role rules (not expressible in its JSON schema), so
# that a good share of the items created are valid and land in the conversation.
_PARTS_BY_ROLE = {
    "user": st.one_of(
        st.fixed_dictionaries({"type": st.just("input_text"), "text": short_text}),
        st.fixed_dictionaries({"type": st.just("input_audio"), "audio": pcm_base64}),
    ),
    "system": st.fixed_dictionaries({"type": st.just("input_text"), "text": short_text}),
    "assistant": st.fixed_dictionaries({"type": st.just("output_text"), "text": short_text}),
}
message_items = st.sampled_from(sorted(_PARTS_BY_ROLE)).flatmap(
    lambda role: st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "id": st.sampled_from((*FUZZ_IDS, *ANCHOR_IDS)) | st.none(),
            "role": st.just(role),
            "content": st.lists(_PARTS_BY_ROLE[role], min_size=1, max_size=2),
        },
    )
)
item_creates = st.fixed_dictionaries(
    {"type": st.just("conversation.item.create"), "item": message_items},
    optional={"event_id": st.just(EVENT_ID), "previous_item_id": LEAF_STRINGS["previous_item_id"]},
)
text_sessions = st.fixed_dictionaries(
    {
        "type": st.just("session.update"),
        "session": st.just({"type": "realtime", "output_modalities": ["text"]}),
    },
    optional={"event_id": st.just(EVENT_ID)},
)

EVENT_STRATEGIES = {kind: _event_schema(cls) for kind, cls in EVENT_CLASSES.items()}
# Every event type from its schema, plus the hand-written shapes; responses in text often
# enough that a batch does not spend itself on speech synthesis.
event_objects: st.SearchStrategy[dict[str, Any]] = st.one_of(
    item_creates, *EVENT_STRATEGIES.values(), text_sessions, item_creates
)


# The beta dialect's own shapes (`OpenAI-Beta: realtime=v1`), which protocol/beta.py translates:
# flat session fields, string formats, a `turn_detection` without `type`, tools without `type`,
# a function name as `tool_choice`, `text` content parts, `transcription_session.update`.
_beta_formats = st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw", "pcm24"])
_beta_session = st.fixed_dictionaries(
    {},
    optional={
        "modalities": st.sampled_from([["text"], ["audio", "text"], ["audio"], ["text", "audio"]]),
        "voice": st.sampled_from(VOICES),
        "instructions": short_text,
        "input_audio_format": _beta_formats,
        "output_audio_format": _beta_formats,
        "input_audio_transcription": st.none()
        | st.fixed_dictionaries(
            {}, optional={"model": st.just("whisper-1"), "language": st.just("en")}
        ),
        "input_audio_noise_reduction": st.none()
        | st.fixed_dictionaries({"type": st.sampled_from(["near_field", "far_field"])}),
        "turn_detection": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["server_vad", "semantic_vad"]),
                "threshold": st.floats(0, 1),
                "silence_duration_ms": st.integers(0, 2000),
                "create_response": st.booleans(),
            },
        ),
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": short_text},
                optional={"type": st.just("function"), "parameters": st.just({"type": "object"})},
            ),
            max_size=2,
        ),
        "tool_choice": st.sampled_from(["auto", "none", "required", "get_weather"]),
        "temperature": st.floats(0.6, 1.2),
        "max_response_output_tokens": st.sampled_from([1, 4096, "inf"]),
        "speed": st.floats(0.25, 1.5),
    },
)
_beta_parts = {
    "user": st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["input_text", "text"]), "text": short_text}
        ),
        st.fixed_dictionaries({"type": st.just("input_audio"), "audio": pcm_base64}),
    ),
    "system": st.fixed_dictionaries(
        {"type": st.sampled_from(["input_text", "text"]), "text": short_text}
    ),
    "assistant": st.fixed_dictionaries({"type": st.just("text"), "text": short_text}),
}
_beta_items = st.sampled_from(sorted(_beta_parts)).flatmap(
    lambda role: st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "role": st.just(role),
            "content": st.lists(_beta_parts[role], min_size=1, max_size=2),
        },
        optional={"id": st.sampled_from((*FUZZ_IDS, *ANCHOR_IDS))},
    )
)
_with_id = {"event_id": st.just(EVENT_ID)}
beta_objects: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("session.update"), "session": _beta_session}, optional=_with_id
    ),
    st.fixed_dictionaries(
        {"type": st.just("transcription_session.update"), "session": _beta_session},
        optional=_with_id,
    ),
    st.fixed_dictionaries(
        {"type": st.just("conversation.item.create"), "item": _beta_items}, optional=_with_id
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("response.create"),
            "response": st.fixed_dictionaries(
                {},
                optional={
                    "modalities": st.sampled_from([["text"], ["audio", "text"]]),
                    "voice": st.sampled_from(VOICES),
                    "output_audio_format": _beta_formats,
                    "max_response_output_tokens": st.sampled_from([1, "inf"]),
                    "conversation": st.sampled_from(["auto", "none"]),
                    "input": st.lists(_beta_items, max_size=2),
                    "tool_choice": st.sampled_from(["auto", "get_weather"]),
                },
            ),
        },
        optional=_with_id,
    ),
)


# --- frames and mutations ----------------------------------------------------------------------


@dataclass
class Frame:
    """One WebSocket frame to send: `value` serialized as JSON text, or `raw` as it is."""

    how: str  # what made it, for failure messages
    value: Any = None
    raw: str | bytes | None = None
    binary: bool = False

    def payload(self, event_id: str) -> str | bytes:
        if isinstance(self.raw, str):
            return self.raw.replace(json.dumps(EVENT_ID), json.dumps(event_id))
        if self.raw is not None:
            return self.raw
        return json.dumps(_replace_id(self.value, event_id))

    def __repr__(self) -> str:
        shown = self.raw if self.raw is not None else self.value
        text = repr(shown)
        return f"Frame({self.how}: {text[:300]}{'...' if len(text) > 300 else ''})"


def _replace_id(value: Any, event_id: str) -> Any:
    if isinstance(value, dict) and value.get("event_id") == EVENT_ID:
        return {**value, "event_id": event_id}
    return value


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*path, index))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with `new` at `path` (containers along the path copied)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _set(value[head], rest, new)
    return copy


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


WRONG_VALUES = (None, True, 0, -1, 1.5, "x", "", [], {}, [1, "a"], {"k": 1})
# Numbers a JSON parser accepts but many programs choke on; integers past 64 bits on their own
# (test_fuzz.py: test_an_integer_past_64_bits_...).
ODD_NUMBERS = (2**63 - 1, -(2**63), 1e308, -0.0, float("nan"), float("inf"), 1e-320)
BIG_INTS = (2**64, -(2**63) - 1, 10**30)
BAD_BASE64 = (
    "!!!!",  # not the alphabet
    "abc",  # bad padding
    "YWJj",  # "abc": three bytes, not whole PCM16 samples
    "AAAA====",  # too much padding
    "AAAA\nAAAA",  # a line break
    "data:audio/pcm;base64,AAAA",  # a data URL
    "ÿÿÿÿ",  # not ASCII
    base64.b64encode(bytes(4801)).decode(),  # valid base64, an odd byte count
    " ",
)
NOT_OBJECTS = ("[]", "null", "42", '"session.update"', "[{}]", "true", "{}")
BROKEN_JSON = (
    "",
    "{",
    '{"type": "response.create",',
    '{"type": "response.create"} trailing',
    "{'type': 'response.create'}",
    '{"type": "response.create", "event_id": "\\ud800"}',  # a lone surrogate
    '{"type": NaN}',
    "\x00",
    "\ufeff{}",  # a byte-order mark
)


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@st.composite
def broken_events(
    draw: st.DrawFn,
    *,
    huge: bool = True,
    depths: tuple[int, ...] = (150, 600, 3000),
    events: st.SearchStrategy[dict[str, Any]] = event_objects,
) -> Frame:
    """A schema-valid event, then broken one way."""
    event = draw(events)
    paths = _paths(event)
    dict_paths = [p for p in paths if isinstance(_get(event, p), dict)]
    leaf_paths = [p for p in paths if p]
    mutations = [
        "wrong_type",
        "drop_key",
        "unknown_key",
        "deep",
        "bad_audio",
        "retype",
        "bad_event_id",
        "odd_number",
        "big_int",
    ] + (["huge"] if huge else [])
    how = draw(st.sampled_from(mutations))
    if how == "wrong_type" and leaf_paths:
        path = draw(st.sampled_from(leaf_paths))
        old = _type_of(_get(event, path))
        new = draw(st.sampled_from([v for v in WRONG_VALUES if _type_of(v) != old]))
        return Frame(f"wrong_type {path}", _set(event, path, new))
    if how == "drop_key":
        path = draw(st.sampled_from(dict_paths))
        keys = sorted(_get(event, path))
        if keys:
            key = draw(st.sampled_from(keys))
            parent = {k: v for k, v in _get(event, path).items() if k != key}
            return Frame(f"drop_key {(*path, key)}", _set(event, path, parent))
    if how == "unknown_key":
        path = draw(st.sampled_from(dict_paths))
        key = draw(st.sampled_from(["unknown", "Type", "event_Id", "session ", "x" * 40]))
        parent = {**_get(event, path), key: draw(json_values)}
        return Frame(f"unknown_key {(*path, key)}", _set(event, path, parent))
    if how == "deep":
        depth = draw(st.sampled_from(depths))
        kind = draw(st.sampled_from(["list", "dict"]))
        path = draw(st.sampled_from(leaf_paths)) if leaf_paths else ("nested",)
        marker = "\x00deep\x00"
        text = json.dumps(_set(event, path, marker) if leaf_paths else {**event, "nested": marker})
        return Frame(
            f"deep {kind} {depth} at {path}",
            raw=text.replace(json.dumps(marker), nested(depth, kind)),
        )
    if how == "bad_audio":
        bad = draw(st.sampled_from(BAD_BASE64))
        audio_paths = [
            p for p in leaf_paths if p[-1] == "audio" and isinstance(_get(event, p), str)
        ]
        if audio_paths:
            path = draw(st.sampled_from(audio_paths))
            return Frame(f"bad_audio {path}", _set(event, path, bad))
        return Frame(
            "bad_audio append",
            {"type": "input_audio_buffer.append", "event_id": EVENT_ID, "audio": bad},
        )
    if how == "retype":
        new_type = draw(
            st.sampled_from(
                [
                    *ce.EVENT_TYPES,
                    "transcription_session.update",  # beta only
                    "conversation.item.created",  # a server event
                    "",
                    "SESSION.UPDATE",
                ]
            )
            | st.sampled_from([None, 1, ["session.update"], {"type": "x"}])
        )
        if new_type != event["type"]:
            return Frame(f"retype {new_type!r}", {**event, "type": new_type})
        return Frame("retype (dropped)", {k: v for k, v in event.items() if k != "type"})
    if how == "bad_event_id":
        bad_id = draw(st.sampled_from([1, 1.5, True, [], {"id": "x"}, "e" * 513]))
        return Frame(f"bad_event_id {bad_id!r:.20}", {**event, "event_id": bad_id})
    if how in ("odd_number", "big_int"):
        path = draw(st.sampled_from(leaf_paths)) if leaf_paths else ("number",)
        number = draw(st.sampled_from(ODD_NUMBERS if how == "odd_number" else BIG_INTS))
        return Frame(f"{how} {number!r} at {path}", _set(event, path, number))
    if how == "huge":
        size = draw(st.sampled_from([64 * 1024, 512 * 1024]))  # MiBs: test_multi_megabyte_...
        path = draw(st.sampled_from(leaf_paths)) if leaf_paths else ("huge",)
        big = draw(st.sampled_from(["A", "é", "\x00"])) * size
        return Frame(f"huge {size} at {path}", _set(event, path, big))
    return Frame("unchanged", event)


@st.composite
def garbage_frames(draw: st.DrawFn) -> Frame:
    """Frames that are not events at all."""
    how = draw(st.sampled_from(["binary", "binary_event", "not_object", "broken_json", "text"]))
    if how == "binary":
        return Frame("binary", raw=draw(st.binary(max_size=64)), binary=True)
    if how == "binary_event":
        return Frame("binary_event", raw=b'{"type": "response.cancel"}', binary=True)
    if how == "not_object":
        return Frame("not_object", raw=draw(st.sampled_from(NOT_OBJECTS)))
    if how == "broken_json":
        return Frame("broken_json", raw=draw(st.sampled_from(BROKEN_JSON)))
    return Frame("text", raw=draw(st.text(max_size=40)))


@st.composite
def frames(
    draw: st.DrawFn,
    *,
    huge: bool = True,
    depths: tuple[int, ...] = (150, 600, 3000),
    events: st.SearchStrategy[dict[str, Any]] = event_objects,
) -> Frame:
    """Valid events, broken events and garbage, mixed: mostly broken."""
    kind = draw(st.sampled_from(["broken", "valid", "broken", "garbage", "broken", "valid"]))
    if kind == "broken":
        return draw(broken_events(huge=huge, depths=depths, events=events))
    if kind == "garbage":
        return draw(garbage_frames())
    return Frame("valid", draw(events))


def _parses(event: dict[str, Any]) -> bool:
    """Whether the server's parser takes it: the JSON schema cannot say which content part
    types a role may carry, nor that an `input_text` part needs its text."""
    try:
        ce.parse_client_dict(event)
    except ProtocolError:
        return False
    return True


valid_frames = event_objects.filter(_parses).map(lambda event: Frame("valid", event))


def _create(item_id: str) -> Frame:
    item = {
        "type": "message",
        "id": item_id,
        "role": "user",
        "content": [{"type": "input_text", "text": item_id}],
    }
    return Frame("valid", {"type": "conversation.item.create", "event_id": EVENT_ID, "item": item})


# Valid events in any order, with a create of each fuzz id somewhere among them, so that
# retrieves, deletes and truncates find an item as often as they miss one.
valid_batches = st.lists(valid_frames, min_size=2, max_size=15).flatmap(
    lambda batch: st.permutations([*batch, *(_create(item_id) for item_id in FUZZ_IDS)])
)
