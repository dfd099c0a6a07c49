"""The metrics' own histogram reads exactly as ``prometheus_client``'s does."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from papo.metrics import LoopHistogram

BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


@given(st.lists(st.sampled_from(BUCKETS) | st.floats(min_value=0, max_value=0.1)))
def test_a_loop_histogram_reads_as_prometheus_clients_histogram(values: list[float]) -> None:
    theirs, ours = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    reference = Histogram("papo_x_seconds", "How long x took", registry=theirs, buckets=BUCKETS)
    histogram = LoopHistogram("papo_x_seconds", "How long x took", ours, BUCKETS)
    for value in values:  # a bound itself falls in its bucket, as there
        reference.observe(value)
        histogram.observe(value)

    def text(registry: CollectorRegistry) -> str:
        return re.sub(r"_created \S+", "_created T", generate_latest(registry).decode())

    assert text(ours) == text(theirs)
