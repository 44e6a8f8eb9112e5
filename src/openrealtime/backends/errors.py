"""The one error type every backend raises, so the runtime can turn it into a wire error."""

from __future__ import annotations


class BackendError(Exception):
    """A backend failed.

    `code` and `message` reach clients (a failed response, a failed transcription): the message
    says what went wrong in words a client can act on, and never names internal hosts or quotes
    an upstream answer. `detail` holds those, for the operator: it is in `str(error)`, which is
    what the server log shows.
    """

    def __init__(
        self, backend: str, message: str, *, code: str = "backend_error", detail: str = ""
    ) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        text = f"{self.backend}: {self.message}"
        return f"{text} [{self.detail}]" if self.detail else text


class MissingDependencyError(BackendError):
    """An optional dependency is not installed; the message carries the install hint."""

    def __init__(self, backend: str, package: str, extra: str | None = None) -> None:
        hint = f"pip install 'openrealtime[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            backend,
            f"the '{package}' package is not installed. Install it with: {hint}",
            code="missing_dependency",
        )
