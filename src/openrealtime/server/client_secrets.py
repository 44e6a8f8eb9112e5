"""Minting client secrets: a server holding a standard key asks for a short-lived `ek_…` secret
that carries a session configuration, and hands only the secret to a browser or phone.

- `POST /v1/realtime/client_secrets` (GA): `{session?, expires_after?}` → `{value, expires_at,
  session}`. The SDK's `types/realtime/client_secret_create_*.py` are the reference.
- `POST /v1/realtime/sessions` and `POST /v1/realtime/transcription_sessions` (beta): a beta
  session object plus `client_secret: {expires_after}` → the beta session with
  `client_secret: {value, expires_at}`. Translated to GA by `protocol/beta.py`, so both
  dialects mint the same thing.

A secret's configuration is validated here exactly as `session.update` would validate it, and
stored whole (defaults filled): a session opened with the secret starts from it
(`app.session_config`). Only a standard key may mint; a client secret is refused with 401, the
status OpenAI gives for a key an endpoint does not accept (docs/protocol.md).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..core.configuration import check_voice
from ..ids import new_id
from ..protocol import errors
from ..protocol.base import WireModel, deferred_adapter
from ..protocol.beta import FORMAT_TO_GA, SESSION_PATHS, session_to_beta, session_to_ga
from ..protocol.errors import ProtocolError, from_validation_error
from ..protocol.session import (
    READ_ONLY_FIELDS,
    AnySession,
    RealtimeSession,
    TranscriptionSession,
)
from .auth import bearer_token
from .errors import Refused, invalid_request, openai_error
from .routing import Routes
from .secrets import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S, PREFIX, SecretStore, new_secret

routes = Routes()

Config = RealtimeSession | TranscriptionSession
_ANY_SESSION: TypeAdapter[Config] = deferred_adapter(AnySession)
# A credential: no proxy or browser cache may keep it.
_NO_STORE = {"Cache-Control": "no-store"}


class ExpiresAfter(WireModel):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = DEFAULT_TTL_S

    @field_validator("seconds")
    @classmethod
    def _in_range(cls, seconds: int) -> int:
        if not MIN_TTL_S <= seconds <= MAX_TTL_S:
            raise ValueError(
                f"{seconds} is out of range; choose between {MIN_TTL_S} and {MAX_TTL_S} "
                f"seconds (the default is {DEFAULT_TTL_S})."
            )
        return seconds


class ClientSecretRequest(WireModel):
    """The GA body. Without `session`, the secret opens a default realtime session."""

    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)
    session: AnySession | None = None


class BetaClientSecret(WireModel):
    """The beta bodies' `client_secret`. The SDK spells its expiry `expires_after` for
    `/sessions` and `expires_at` for `/transcription_sessions`; either is taken at either."""

    expires_after: ExpiresAfter | None = None
    expires_at: ExpiresAfter | None = None

    @property
    def ttl_s(self) -> int:
        expiry = self.expires_after or self.expires_at
        return expiry.seconds if expiry is not None else DEFAULT_TTL_S


# --- routes --------------------------------------------------------------------------------


@routes.post("/v1/realtime/client_secrets")
async def create_client_secret(request: Request) -> JSONResponse:
    try:
        check_minter(request)
        body = await json_object(request)
        try:
            parsed = ClientSecretRequest.model_validate(body)
        except ValidationError as exc:
            raise invalid_request(from_validation_error(exc, body)) from None
        config = parsed.session or RealtimeSession()
        _check_voice(request, config, "session.audio.output.voice")
        value, expires_at, shown = await mint(
            request.app.state.auth.secrets, config, parsed.expires_after.seconds
        )
    except Refused as refused:
        return refused.response
    return JSONResponse(
        {"value": value, "expires_at": expires_at, "session": shown}, headers=_NO_STORE
    )


@routes.post("/v1/realtime/sessions")
async def create_beta_session(request: Request) -> JSONResponse:
    return await _create_beta(request, transcription=False)


@routes.post("/v1/realtime/transcription_sessions")
async def create_beta_transcription_session(request: Request) -> JSONResponse:
    return await _create_beta(request, transcription=True)


# --- the beta dialect ----------------------------------------------------------------------

# GA paths back to the beta names, longest first, so a beta client's errors name its fields.
_GA_TO_BETA = sorted(
    ((".".join(path), beta) for beta, path in SESSION_PATHS.items()),
    key=lambda pair: -len(pair[0]),
)
_BETA_FORMATS = ", ".join(f"'{name}'" for name in FORMAT_TO_GA)
# The fields of the SDK's beta `SessionCreateParams` / `TranscriptionSessionCreateParams`
# (`client_secret` aside). Checked before translation, so an unknown one is named as sent.
_BETA_FIELDS = frozenset(
    {
        "model",
        "modalities",
        "instructions",
        "voice",
        "speed",
        "input_audio_format",
        "output_audio_format",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "turn_detection",
        "tools",
        "tool_choice",
        "temperature",
        "max_response_output_tokens",
        "tracing",
    }
)
_BETA_TRANSCRIPTION_FIELDS = frozenset(
    {
        "modalities",
        "input_audio_format",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "turn_detection",
        "include",
    }
)


async def _create_beta(request: Request, *, transcription: bool) -> JSONResponse:
    try:
        check_minter(request)
        fields = dict(await json_object(request))
        secret_body = fields.pop("client_secret", None) or {}
        try:
            secret = BetaClientSecret.model_validate(secret_body)
        except ValidationError as exc:
            raise invalid_request(
                from_validation_error(exc, secret_body, prefix="client_secret")
            ) from None
        _check_beta_values(fields, transcription)
        ga = session_to_ga(fields, transcription=transcription)
        kind: type[Config] = TranscriptionSession if transcription else RealtimeSession
        try:
            config = kind.model_validate(ga)
        except ValidationError as exc:
            raise invalid_request(_to_beta_error(from_validation_error(exc, ga))) from None
        _check_voice(request, config, "voice")
        value, expires_at, shown = await mint(request.app.state.auth.secrets, config, secret.ttl_s)
    except Refused as refused:
        return refused.response
    beta = session_to_beta(shown)
    if transcription:
        # GA has no modalities for a transcription session; beta echoes them (OpenAI's default).
        beta["modalities"] = fields.get("modalities") or ["audio", "text"]
    beta["client_secret"] = {"value": value, "expires_at": expires_at}
    return JSONResponse(beta, headers=_NO_STORE)


def _check_beta_values(fields: dict[str, Any], transcription: bool) -> None:
    """What translation would pass on in a shape GA cannot name well: fields beta does not
    have, and beta's own values."""
    known = _BETA_TRANSCRIPTION_FIELDS if transcription else _BETA_FIELDS
    for key in fields:
        if key not in known:
            raise invalid_request(
                ProtocolError(f"Unknown parameter: '{key}'.", errors.UNKNOWN_PARAMETER, key)
            )
    for key in ("input_audio_format", "output_audio_format"):
        value = fields.get(key)
        if key in fields and value not in FORMAT_TO_GA:
            raise invalid_request(
                ProtocolError(
                    f"Invalid value: {value!r}. Supported values are: {_BETA_FORMATS}.",
                    errors.INVALID_VALUE,
                    key,
                )
            )
    modalities = fields.get("modalities")
    if (
        transcription
        and "modalities" in fields
        and not (
            isinstance(modalities, list) and modalities and set(modalities) <= {"text", "audio"}
        )
    ):
        raise invalid_request(
            ProtocolError(
                "Invalid value for 'modalities': expected a list of 'text' and 'audio'.",
                errors.INVALID_VALUE,
                "modalities",
            )
        )


def _to_beta_error(error: ProtocolError) -> ProtocolError:
    param = error.param
    if param is None:
        return error
    for ga, beta in _GA_TO_BETA:
        if param == ga or param.startswith((ga + ".", ga + "[")):
            renamed = beta + param[len(ga) :]
            error.message = error.message.replace(f"'{param}'", f"'{renamed}'")
            error.param = renamed
            break
    return error


# --- shared --------------------------------------------------------------------------------


def check_minter(request: Request) -> None:
    """Only a standard key mints (any key but a client secret, in open mode)."""
    token = bearer_token({k.lower(): v for k, v in request.headers.items()})
    if request.app.state.auth.is_standard_key(token):
        return
    if token is not None and token.startswith(PREFIX):
        message = (
            "A client secret cannot mint client secrets. Mint them on your server with a "
            "standard API key, and give only the secret to the browser or device."
        )
    elif token:
        message = (
            "Incorrect API key provided. Send a configured key as 'Authorization: Bearer KEY'."
        )
    else:
        message = "Missing API key. Send 'Authorization: Bearer KEY'."
    raise Refused(openai_error(401, message, "invalid_api_key"))


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}  # every field is optional
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(
            openai_error(
                400, f"The body is not valid JSON: {exc}. Send a JSON object.", errors.INVALID_JSON
            )
        ) from None
    if not isinstance(body, dict):
        raise Refused(openai_error(400, "The body must be a JSON object.", errors.INVALID_TYPE))
    return body


def _check_voice(request: Request, config: Config, param: str) -> None:
    """A voice the speech backend cannot speak is refused now, not when the session opens."""
    if not isinstance(config, RealtimeSession):
        return
    tts = request.app.state.backends.tts
    try:
        check_voice(config.audio.output.voice, param, lambda v: tts.resolve_voice(v) is not None)
    except ProtocolError as error:
        raise invalid_request(error) from None


async def mint(secrets: SecretStore, config: Config, ttl_s: int) -> tuple[str, int, dict[str, Any]]:
    """Store a secret for a validated configuration; return its value, its expiry, and the
    session as `session.created` will show it. For any route that mints (the console too)."""
    stored = config.model_dump(mode="json", exclude=set(READ_ONLY_FIELDS))
    secret = new_secret(stored, ttl_s, time.time())
    await secrets.put(secret)
    # Each connection gets a session id of its own; this one names the configuration shown.
    shown = _ANY_SESSION.validate_python({**stored, "id": new_id("sess")})
    return secret.value, secret.expires_at, shown.model_dump(mode="json")
