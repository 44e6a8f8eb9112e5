"""OpenAI's JSON error shape for HTTP answers, and the errors the routes turn into one."""

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..protocol.errors import ProtocolError


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


class Refused(Exception):
    """An HTTP answer other than success, already in OpenAI's error shape."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def invalid_request(error: ProtocolError) -> Refused:
    """A 400 for what the request body got wrong."""
    return Refused(openai_error(400, error.message, error.code, error.param))


async def routing_error(request: Request, exc: Exception) -> JSONResponse:
    """No route for the path (404), or not for the method (405, with `Allow`): in OpenAI's shape,
    as its API answers a URL it does not serve, so an SDK shows the message."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = exc.detail
    answer = openai_error(exc.status_code, message)
    answer.headers.update(exc.headers or {})
    return answer
