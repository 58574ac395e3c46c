"""Prometheus export of :mod:`callstate.observe.measures` (``pip install callstate[prometheus]``).

Turn it on with one line; scrape ``/metrics`` of the returned app, or call
``sink.serve(port)`` for prometheus_client's own HTTP server::

    metrics = callstate.observe.prometheus.PrometheusSink(keeper)  # adds itself as a sink

Names follow Prometheus conventions: ``callstate_recovery_duration_seconds``,
``callstate_tool_outcomes_total``. Each sink keeps its own registry unless one is given,
so two keepers in a process can export separately or share one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "callstate.observe.prometheus needs prometheus_client: pip install callstate[prometheus]"
    raise ImportError(msg) from exc

from .measures import FLUSH, INSTRUMENTS, ON_HOLD, SESSIONS, LiveSessions, readings
from .recovery import RecoveryEvent

__all__ = ["MetricsServer", "PrometheusSink"]

#: seconds; fine at the low end, where flushes, resumes and decisions live
BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class _Gauges(Collector):
    """Live and on-hold sessions, read from the watched keepers at scrape time."""

    def __init__(self, keepers: list[LiveSessions]) -> None:
        self._keepers = keepers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        live = [s for k in self._keepers for s in k.live()]
        yield GaugeMetricFamily(SESSIONS.prometheus_name, SESSIONS.description, len(live))
        held = sum(1 for s in live if s.on_hold)
        yield GaugeMetricFamily(ON_HOLD.prometheus_name, ON_HOLD.description, held)


class MetricsServer:
    """prometheus_client's HTTP server on its thread; ``close()`` stops it."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving, close the socket and wait for the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class PrometheusSink:
    """A sink keeping callstate's metrics in a Prometheus registry.

    Args:
        keepers: keepers to watch; the sink adds itself to each (``add_sink``) and
            counts their sessions in the gauges.
        registry: where the metrics live; a new ``CollectorRegistry`` by default.
    """

    def __init__(self, *keepers: Any, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._keepers: list[LiveSessions] = []
        self._metrics: dict[str, Any] = {}
        for inst in INSTRUMENTS:
            labels = list(inst.labels)
            if inst.kind == "counter":
                name = inst.prometheus_name
                self._metrics[inst.name] = Counter(
                    name, inst.description, labels, registry=self.registry
                )
            elif inst.kind == "histogram":
                self._metrics[inst.name] = Histogram(
                    inst.prometheus_name,
                    inst.description,
                    labels,
                    registry=self.registry,
                    buckets=BUCKETS,
                )
        self.registry.register(_Gauges(self._keepers))
        for keeper in keepers:
            self.watch(keeper)

    def watch(self, keeper: Any) -> None:
        """Add this sink to ``keeper`` and count its sessions in the gauges."""
        keeper.add_sink(self)
        self._keepers.append(keeper)

    def __call__(self, event: RecoveryEvent) -> None:
        for r in readings(event):
            metric = self._metrics[r.instrument.name]
            target = metric.labels(**r.labels) if r.instrument.labels else metric
            if r.instrument.kind == "counter":
                target.inc(r.value)
            else:
                target.observe(r.value)

    def measure(self, name: str, value: float) -> None:
        """Record a measurement that is not an event (the flusher's commit time)."""
        if name == "flush":
            self._metrics[FLUSH.name].observe(value)

    def app(self) -> Callable[..., Any]:
        """An ASGI app serving the registry in the Prometheus text format."""
        return prometheus_client.make_asgi_app(registry=self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``addr:port`` from a thread until ``close()``."""
        server, thread = prometheus_client.start_http_server(port, addr, registry=self.registry)
        return MetricsServer(server, thread)

    def text(self) -> str:
        """The registry in the Prometheus text format (what a scrape returns)."""
        return prometheus_client.generate_latest(self.registry).decode()
