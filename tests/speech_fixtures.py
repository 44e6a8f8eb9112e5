"""Real speech for tests: the tests' name for `benchmarks.lib.speech`, which the benchmarks
share (the repository root is on pytest's `pythonpath`)."""

from benchmarks.lib.speech import speak, with_silence

__all__ = ["speak", "with_silence"]
