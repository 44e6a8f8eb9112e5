"""Custom voices (`voice: {"id": ...}`): an id that names a backend voice is spoken with it;
any other id is refused with a clear error wherever a voice can be set."""

from __future__ import annotations

import openai
import pytest
from conftest import recv, recv_until
from scripted_llm import Text

from openrealtime.backends.tts.hibari import SHIPPED_VOICE


def _user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_custom_voice_id_maps_to_a_backend_voice(client, llm) -> None:
    llm.script(Text(["Hi."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": {"id": SHIPPED_VOICE}}}}
        )
        updated = recv_until(conn, "session.updated")[-1]
        assert updated.session.audio.output.voice.id == SHIPPED_VOICE
        conn.conversation.item.create(item=_user("Say hi."))
        conn.response.create()
        events = recv_until(conn, "response.done", limit=2000)
    done = events[-1].response
    assert done.status == "completed"
    assert any(e.type == "response.output_audio.delta" for e in events)
    assert done.audio.output.voice == SHIPPED_VOICE  # a response names its voice as a string


def test_unknown_custom_voice_is_refused_in_update_and_response(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": {"id": "voice_nope"}}}}
        )
        error = recv(conn)
        assert error.type == "error"
        assert (error.error.code, error.error.param) == (
            "invalid_value",
            "session.audio.output.voice.id",
        )
        assert "voice_nope" in error.error.message
        conn.response.create(response={"audio": {"output": {"voice": {"id": "voice_nope"}}}})
        error = recv(conn)
        assert error.type == "error"
        assert error.error.param == "response.audio.output.voice.id"
    assert llm.requests == []


def test_unknown_custom_voice_is_refused_when_minting_a_client_secret(client) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.realtime.client_secrets.create(
            session={
                "type": "realtime",
                "model": "gpt-realtime",
                "audio": {"output": {"voice": {"id": "voice_nope"}}},
            }
        )
    assert refused.value.code == "invalid_value"
    assert "voice_nope" in refused.value.message
    minted = client.realtime.client_secrets.create(
        session={
            "type": "realtime",
            "model": "gpt-realtime",
            "audio": {"output": {"voice": {"id": SHIPPED_VOICE}}},
        }
    )
    assert minted.value.startswith("ek_")
