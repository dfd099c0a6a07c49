"""Prometheus metrics (``GET /metrics``) and health (``GET /healthz``).

Counters live as plain integers on the hub and the transport and are read
only when Prometheus scrapes, so counting a delivery costs an integer
increment, not a lock. The two latency histograms are observed once per
history commit and once per fanned-out message (or run), never per recipient, and
only on the event loop: a :class:`LoopHistogram` counts in plain integers
too (``prometheus_client``'s ``Histogram`` takes a lock twice an observation,
which cost a fan-out more than a tenth of its own time). Everything hangs off
one registry per server, created in ``main``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from papo.hub import Hub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class TransportStats:
    slow_consumer_closes: int = 0
    refused_full: int = 0
    refused_origin: int = 0
    refused_per_ip: int = 0


class _HubCollector(Collector):
    def __init__(self, hub: Hub, transport: TransportStats) -> None:
        self.hub = hub
        self.transport = transport

    def collect(self) -> Iterator[Metric]:
        hub, stats = self.hub, self.hub.stats
        yield GaugeMetricFamily("papo_connections", "Open WebSocket connections", len(hub.pool))
        yield GaugeMetricFamily(
            "papo_users_online",
            "Users with at least one live session",
            sum(1 for u in hub.users.values() if u.sessions and not u.guest),
        )
        yield GaugeMetricFamily(
            "papo_rooms_routed",
            "Rooms with members connected to this instance (the default room included)",
            len(hub.rooms),
        )
        counters: list[tuple[str, str, int]] = [
            ("papo_connections_total", "Connections accepted", stats.connections_total),
            ("papo_messages_received_total", "Messages received from clients", stats.received),
            ("papo_messages_stored_total", "Messages stored in the history", stats.stored),
            ("papo_messages_delivered_total", "Events written to recipients", stats.deliveries),
            ("papo_rate_limited_total", "Messages refused by the rate limit", stats.rate_limited),
            (
                "papo_flood_closes_total",
                "Connections closed for flooding (1008)",
                stats.flood_closes,
            ),
            (
                "papo_slow_consumer_closes_total",
                "Connections closed for reading too slowly (1013)",
                self.transport.slow_consumer_closes,
            ),
            (
                "papo_refused_connections_total",
                "Handshakes refused: server full (503), foreign origin (403) or too many "
                "from one address (429)",
                self.transport.refused_full
                + self.transport.refused_origin
                + self.transport.refused_per_ip,
            ),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name.removesuffix("_total"), doc, value)


class LoopHistogram(Collector):
    """A histogram observed from the event loop only: counts without a lock.

    It reads as ``prometheus_client``'s ``Histogram`` does (``_bucket``,
    ``_count``, ``_sum``, ``_created``).
    """

    def __init__(
        self, name: str, documentation: str, registry: CollectorRegistry, buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = [*sorted(buckets), math.inf]
        self.labels: list[str] = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        self.counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.created = time.time()
        registry.register(self)

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def collect(self) -> Iterator[Metric]:
        cumulative: list[tuple[str, float]] = []
        total = 0
        for label, count in zip(self.labels, self.counts, strict=True):
            total += count
            cumulative.append((label, float(total)))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, self.sum)
        family.samples.append(Sample(self.name + "_created", {}, self.created))
        yield family


class Metrics:
    """The server's registry: hub counters plus the latency histograms."""

    def __init__(self, hub: Hub, transport: TransportStats) -> None:
        self.transport = transport
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_HubCollector(hub, transport))
        self.history_write = LoopHistogram(
            "papo_history_write_seconds",
            "Time to commit one batch of messages to the history",
            self.registry,
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.fanout = LoopHistogram(
            "papo_fanout_seconds",
            "Time to write one message (or one commit's run of messages to a room) "
            "to all its recipients",
            self.registry,
            (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
