"""The public API is `openrealtime.__all__`: every name resolves (imported lazily), `dir()`
lists exactly those, and `import openrealtime` alone imports none of the server."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
import typing

import pytest

import openrealtime

PUBLIC = {
    "__version__",
    "create_app",
    "Settings",
    "Backends",
    "create_backends",
    "VoiceActivityDetector",
    "Transcriber",
    "LanguageModel",
    "Synthesizer",
}
PROTOCOLS = ("VoiceActivityDetector", "Transcriber", "LanguageModel", "Synthesizer")


def test_all_is_the_declared_api_and_dir_lists_nothing_else() -> None:
    assert set(openrealtime.__all__) == PUBLIC
    assert len(openrealtime.__all__) == len(PUBLIC)  # no name twice
    public_in_dir = {name for name in dir(openrealtime) if not name.startswith("_")}
    assert public_in_dir | {"__version__"} == PUBLIC
    assert "__version__" in dir(openrealtime)


@pytest.mark.parametrize("name", sorted(PUBLIC - {"__version__"}))
def test_every_name_resolves_to_what_it_names(name: str) -> None:
    value = getattr(openrealtime, name)
    assert value.__name__ == name
    # Defined inside the package (not re-exported from a dependency).
    assert value.__module__.startswith("openrealtime.")
    assert getattr(openrealtime, name) is value  # cached after the first lookup


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_backend_interfaces_are_protocols(name: str) -> None:
    interface = getattr(openrealtime, name)
    assert inspect.isclass(interface) and getattr(interface, "_is_protocol", False)
    assert typing.Protocol in interface.__mro__


def test_the_entry_points_are_what_they_say() -> None:
    settings = openrealtime.Settings(api_keys=["sk-x"])
    assert settings.api_keys == ["sk-x"]
    assert callable(openrealtime.create_app) and callable(openrealtime.create_backends)
    assert openrealtime.__version__ == importlib.metadata.version("openrealtime")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        openrealtime.nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from openrealtime import nope", {})


def test_importing_the_package_imports_none_of_it() -> None:
    """`import openrealtime` stays cheap: no submodule, no `typing`, no third-party package."""
    code = (
        "import sys; before = set(sys.modules); import openrealtime; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['openrealtime']"
