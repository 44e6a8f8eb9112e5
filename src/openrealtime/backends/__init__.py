"""The backend contracts: one Protocol per kind, and the abilities a backend declares.

Implementations live one per file under `vad/`, `stt/`, `tts/` and `llm/`;
`registry.create_backends` chooses them from the settings.
"""

from .base import BackendBase, Capabilities
from .errors import BackendError, MissingDependencyError
from .llm.base import LanguageModel
from .stt.base import Transcriber, TranscriptionStream
from .tts.base import Synthesizer
from .vad.base import VadStream, VoiceActivityDetector

__all__ = [
    "BackendBase",
    "BackendError",
    "Capabilities",
    "LanguageModel",
    "MissingDependencyError",
    "Synthesizer",
    "Transcriber",
    "TranscriptionStream",
    "VadStream",
    "VoiceActivityDetector",
]
