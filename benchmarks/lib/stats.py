"""Percentiles, tables, and the JSON results with the machine and the code they measured."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import openrealtime

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "benchmarks" / "results"
SOURCES_MEASURED: list[dict[str, Any]] = []  # the code each openrealtime process started with


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of `values`; nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(values_s: list[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, Any]:
    """Percentiles, mean, min and max of durations given in seconds, reported in ms."""
    ms = [v * 1000 for v in values_s]
    out: dict[str, Any] = {"n": len(ms)}
    for q in qs:
        out[f"p{q:g}"] = round(percentile(ms, q), 3)
    if ms:
        out["mean"] = round(sum(ms) / len(ms), 3)
        out["min"] = round(min(ms), 3)
        out["max"] = round(max(ms), 3)
    return out


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    def line(values: list[str], widths: list[int]) -> str:
        # The first column (the row's name) left-aligned, the figures right-aligned.
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print(line(headers, widths))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row, widths))


def machine() -> dict[str, Any]:
    model = ""
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source() -> dict[str, Any]:
    """Which code was measured: the commit, and a hash of the openrealtime package imported
    (the servers inherit this process's environment, so they import the same one: to measure a
    frozen copy of src/ while the tree is being edited, put it first on PYTHONPATH)."""
    src = Path(openrealtime.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return {"commit": head, "src": str(src), "src_tree_sha256": digest.hexdigest()[:16]}


def record_source() -> None:
    """Note the code an openrealtime process is about to start with."""
    src = source()
    if src not in SOURCES_MEASURED:
        SOURCES_MEASURED.append(src)


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    sources = SOURCES_MEASURED or [source()]  # no server started: the code this client ran
    payload = {"machine": machine(), "sources_measured": sources, **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
