"""OpenAI's JSON error shape for HTTP answers, and the errors the routes turn into one."""

from fastapi.responses import JSONResponse


class SharedStateUnavailable(Exception):
    """An operation needs the shared state and cannot reach it. The message says what could
    not be done, for the client (HTTP 503, or a WebSocket close with 1011: server/shared.py)."""


def openai_error(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        status_code=status,
    )
