"""End-to-end benchmarks of openrealtime. Run each from the repository root as a module, e.g.
`python -m benchmarks.text_turn`; what they share is in `benchmarks.lib`."""
