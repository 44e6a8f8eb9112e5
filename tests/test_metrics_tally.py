"""Per-chunk event counters are tallied and handed to Prometheus in batches (runtime/metrics.py)."""

from openrealtime.runtime.metrics import TALLY_BATCH, Metrics

APPEND = "input_audio_buffer.append"


def _counted(metrics: Metrics, event_type: str) -> float:
    """What the counter itself holds, read without the collection that hands tallies over."""
    for metric in metrics.events_in.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == {"type": event_type}:
                return sample.value
    return 0.0


def test_hot_events_reach_the_counter_every_batch_and_on_collection() -> None:
    metrics = Metrics()
    count = metrics.events_in_by_type(APPEND)
    for _ in range(TALLY_BATCH - 1):
        count.inc()
    assert _counted(metrics, APPEND) == 0  # still tallied
    count.inc()
    assert _counted(metrics, APPEND) == TALLY_BATCH
    count.inc()
    count.inc()
    scraped = metrics.registry.get_sample_value(
        "openrealtime_client_events_total", {"type": APPEND}
    )
    assert scraped == TALLY_BATCH + 2
    line = f'openrealtime_client_events_total{{type="{APPEND}"}} {TALLY_BATCH + 2}.0'
    assert line.encode() in metrics.render()


def test_other_events_count_at_once() -> None:
    metrics = Metrics()
    metrics.events_in_by_type("session.update").inc()
    assert _counted(metrics, "session.update") == 1
