"""Outgoing HTTP for the backends: aiohttp, one `ClientSession` per backend, and how a failed
request becomes a `BackendError`.

- Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY apply, as they do for the `openai` SDK, read
  once per backend. (aiohttp's `trust_env=True` reads them, and ~/.netrc, in a worker thread
  on every request: two thread hops, ~1.2 ms of CPU per chat completion here, which is more
  than the rest of the request.) TLS is verified against the system's certificates.
- No request is ever sent twice. aiohttp re-sends a request on a new connection when a pooled
  one fails before the answer, but only for idempotent methods (`IDEMPOTENT_METHODS` in
  aiohttp/client.py, after RFC 9112 §9.3.1.1); the backends POST, and a POST that fails is
  reported, never retried: a chat completion sent twice is generated (and billed) twice.
- Timeouts: `timeouts(seconds)` bounds the connection and each wait for data from the server,
  not the whole answer (a long answer that keeps streaming is fine).
- Clients see what went wrong and a code; the URL, the exception and the upstream body go in
  the error's `detail`, which only the server log shows.
"""

from __future__ import annotations

import asyncio
import urllib.request
import weakref
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from yarl import URL

from .errors import BackendError

if TYPE_CHECKING:  # aiohttp (~0.15 s) loads with the first request, not at start (issue 9)
    import aiohttp

# Idle connections older than this are closed rather than reused: servers close theirs (uvicorn
# after 5 s), and a POST sent into one that is closing fails, since it is never re-sent.
_KEEPALIVE_SECONDS = 4.0
_EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class Timeouts:
    """aiohttp.ClientTimeout's fields, made into one with the first session."""

    total: float | None = None
    connect: float | None = None
    sock_read: float | None = None


def timeouts(seconds: float) -> Timeouts:
    """Connect within `seconds`, then never wait longer than `seconds` for the next bytes."""
    return Timeouts(total=None, connect=seconds, sock_read=seconds)


class HTTPSessions:
    """One backend's aiohttp sessions: one per event loop, created on first use.

    A server has one loop. Tests share a backend between servers that each run their own loop,
    and a session belongs to the loop it was made on; one whose loop has closed is let go.
    """

    def __init__(self, base_url: str, api_key: str | None, timeout: Timeouts) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"User-Agent": "openrealtime"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._proxy = env_proxy(URL(self.base_url))
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        weakref.finalize(self, _let_go_of_closed_loops, self._sessions)

    def url(self, path: str) -> URL:
        return URL(self.base_url + path)

    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            _let_go_of_closed_loops(self._sessions)
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=_KEEPALIVE_SECONDS),
                headers=self._headers,
                # Plain bodies, as before: a compressed SSE stream can be held back in buffers.
                skip_auto_headers=("Accept-Encoding",),
                timeout=aiohttp.ClientTimeout(**asdict(self._timeout)),
                proxy=self._proxy,
            )
        return session

    async def aclose(self) -> None:
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()
        _let_go_of_closed_loops(self._sessions)


def env_proxy(url: URL) -> str | None:
    """The proxy the environment names for `url` (credentials may be in it), or None when
    there is none or NO_PROXY exempts the host."""
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _let_go_of_closed_loops(
    sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession],
) -> None:
    for loop in [loop for loop in sessions if loop.is_closed()]:
        # Its connections died with the loop, so closing has nothing to wait for and runs to
        # its end at once, without a loop; closed, the session does not warn when collected.
        closing = sessions.pop(loop).close()
        try:
            closing.send(None)
        except StopIteration:
            continue
        closing.close()  # it would wait after all: give up, nothing is left to free


def request_failed(
    backend: str, service: str, url: URL | str, exc: Exception, timeout: float
) -> BackendError:
    """A request that got no complete answer (`exc` from aiohttp, or a timeout)."""
    import aiohttp

    detail = f"{url}: {exc!r}"
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors
        return BackendError(
            backend,
            f"{service} did not answer in time ({timeout:g} s).",
            code=f"{backend}_timeout",
            detail=detail,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, proxy, TLS
        return BackendError(
            backend, f"{service} cannot be reached.", code=f"{backend}_unreachable", detail=detail
        )
    return interrupted(backend, service, detail)


def interrupted(backend: str, service: str, detail: str) -> BackendError:
    return BackendError(
        backend,
        f"{service} broke off before its answer was complete; try again.",
        code=f"{backend}_interrupted",
        detail=detail,
    )


def status_failed(
    backend: str, service: str, url: URL | str, status: int, body: bytes, hint: str = ""
) -> BackendError:
    """An answer with an error status. The upstream body is for the log only: it can name
    internal hosts, models or keys."""
    message = (
        f"{service} refused the request (HTTP {status})."
        if 400 <= status < 500
        else f"{service} failed (HTTP {status}); try again."
    )
    detail = f"{url} answered HTTP {status}: {excerpt(body)!r}"
    return BackendError(
        backend, message, code=f"{backend}_error", detail=f"{detail}; {hint}" if hint else detail
    )


def excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"
