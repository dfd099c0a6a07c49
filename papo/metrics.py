"""Prometheus metrics (``GET /metrics``) and health (``GET /healthz``).

Counters live as plain integers on the hub and the transport and are read
only when Prometheus scrapes, so counting a delivery costs an integer
increment, not a lock. The two latency histograms are observed once per
history commit and once per fanned-out message, never per recipient.
Everything hangs off one registry per server, created in ``main``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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


class Metrics:
    """The server's registry: hub counters plus the latency histograms."""

    def __init__(self, hub: Hub, transport: TransportStats) -> None:
        self.transport = transport
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_HubCollector(hub, transport))
        self.history_write = Histogram(
            "papo_history_write_seconds",
            "Time to commit one batch of messages to the history",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.fanout = Histogram(
            "papo_fanout_seconds",
            "Time to write one message (or one commit's run of messages to a room) "
            "to all its recipients",
            registry=self.registry,
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
