"""openrealtime: a self-hosted server that speaks the OpenAI Realtime API.

The public API is `__all__`: the app factory, its settings, the backends it runs and their
interfaces. Each name is imported on first use, so `import openrealtime` stays cheap (the
CLI, and a process that only needs `__version__`, pay for nothing else).
"""

__version__ = "0.1.0"

# Where each public name lives; `__getattr__` imports it from there on first use.
_EXPORTS = {
    "create_app": "openrealtime.server.app",
    "Settings": "openrealtime.config",
    "Backends": "openrealtime.backends.registry",
    "create_backends": "openrealtime.backends.registry",
    "VoiceActivityDetector": "openrealtime.backends.vad.base",
    "Transcriber": "openrealtime.backends.stt.base",
    "LanguageModel": "openrealtime.backends.llm.base",
    "Synthesizer": "openrealtime.backends.tts.base",
}

__all__ = [
    "Backends",
    "LanguageModel",
    "Settings",
    "Synthesizer",
    "Transcriber",
    "VoiceActivityDetector",
    "__version__",
    "create_app",
    "create_backends",
]

# True for type checkers only; `typing` itself would cost `import openrealtime` ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from openrealtime.backends.llm.base import LanguageModel
    from openrealtime.backends.registry import Backends, create_backends
    from openrealtime.backends.stt.base import Transcriber
    from openrealtime.backends.tts.base import Synthesizer
    from openrealtime.backends.vad.base import VoiceActivityDetector
    from openrealtime.config import Settings
    from openrealtime.server.app import create_app
del TYPE_CHECKING


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # The public names, whether imported yet or not, and the module's own dunders; not the
    # submodules or helpers.
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
