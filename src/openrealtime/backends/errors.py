"""The one error type every backend raises, so the runtime can turn it into a wire error."""

from __future__ import annotations


class BackendError(Exception):
    """A backend failed. `message` says what failed and how to fix the configuration."""

    def __init__(self, backend: str, message: str, *, code: str = "backend_error") -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message
        self.code = code


class MissingDependencyError(BackendError):
    """An optional dependency is not installed; the message carries the install hint."""

    def __init__(self, backend: str, package: str, extra: str | None = None) -> None:
        hint = f"pip install 'openrealtime[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            backend,
            f"the '{package}' package is not installed. Install it with: {hint}",
            code="missing_dependency",
        )
