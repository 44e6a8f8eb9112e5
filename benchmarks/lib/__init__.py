"""What the benchmarks share.

- `launch`: the entry point of a server process (`python -m benchmarks.lib.launch llm|openrealtime`)
- `fake_llm`: the instant or paced Chat Completions (and transcription) server it runs
- `control`: the debug-only side channel inside the openrealtime process
- `processes`: those processes seen from the benchmark (start, stop, /proc, side channel)
- `machine`: CPU meters, the machine's load, niceness and the arguments every script takes
- `clients`: WebSocket sessions, the client's own event loop, its lag
- `payloads`: the events the clients send, spoken sentences ready to stream
- `speech`: real speech from espeak-ng or hibari (shared with the tests)
- `conversation`: a spoken conversation's client side (paced microphone, turns, stages)
- `wer`: word error rate with jiwer/Whisper-style text normalisation
- `stats`: percentiles, tables, the JSON results and what they were measured on
"""
