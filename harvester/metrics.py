"""Prometheus metrics, one registry per app instance so tests and benchmarks never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.posts_received = Counter(
            "harvester_posts_received_total",
            "Posts emitted by a source into the inbox",
            ["source"],
            registry=r,
        )
        self.posts_malformed = Counter(
            "harvester_posts_malformed_total",
            "Payloads a source could not parse, skipped",
            ["source"],
            registry=r,
        )
        self.posts_dropped = Counter(
            "harvester_posts_dropped_total", "Posts dropped by a full queue", ["source", "queue"], registry=r
        )
        self.dedup_hits = Counter("harvester_dedup_hits_total", "Posts dropped as already seen", registry=r)
        self.posts_stored = Counter(
            "harvester_posts_stored_total", "Posts committed to the store", registry=r
        )
        self.posts_matched = Counter(
            "harvester_posts_matched_total", "Posts matching a rule", ["rule"], registry=r
        )
        self.source_restarts = Counter(
            "harvester_source_restarts_total",
            "Collector restarts by the supervisor",
            ["source", "reason"],
            registry=r,
        )
        self.signals = Counter("harvester_signals_total", "Signals emitted", ["rule", "kind"], registry=r)
        self.alerts_sent = Counter("harvester_alerts_sent_total", "Alerts delivered", ["sink"], registry=r)
        self.alerts_failed = Counter(
            "harvester_alerts_failed_total", "Failed delivery attempts", ["sink"], registry=r
        )
        self.alerts_dead = Counter(
            "harvester_alerts_dead_lettered_total",
            "Alerts moved to the dead-letter state",
            ["sink"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "harvester_alerts_suppressed_total",
            "Signals not alerted because of a cooldown",
            ["rule"],
            registry=r,
        )
        self.alerts_silenced = Counter(
            "harvester_alerts_silenced_total",
            "Signals not alerted because a silence matched",
            ["rule"],
            registry=r,
        )
        self.alerts_inhibited = Counter(
            "harvester_alerts_inhibited_total",
            "Signals not alerted because a more severe signal of the same rule was active",
            ["rule"],
            registry=r,
        )
        self.alerts_grouped = Histogram(
            "harvester_alert_group_signals",
            "Signals per alert message (grouping)",
            ["sink"],
            buckets=(1, 2, 5, 10, 25, 50, 100),
            registry=r,
        )
        self.alerts_retried = Counter(
            "harvester_alerts_retried_total",
            "Failed attempts scheduled for another try",
            ["sink"],
            registry=r,
        )
        self.alerts_rate_limited = Counter(
            "harvester_alerts_rate_limited_total",
            "Sends deferred by a sink's rate limit (not counted as attempts)",
            ["sink"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "harvester_outbox_backlog", "Alerts in the outbox by status", ["status"], registry=r
        )
        self.queue_depth = Gauge("harvester_queue_depth", "Items waiting in a queue", ["queue"], registry=r)
        self.store_errors = Counter(
            "harvester_store_errors_total", "Failed store writes, retried", registry=r
        )
        self.post_to_signal = Histogram(
            "harvester_post_to_signal_seconds",
            "Time from a post entering the inbox to the signal it triggered",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.post_to_alert = Histogram(
            "harvester_post_to_alert_seconds",
            "Time from the post that triggered a signal (the signal's time) to the alert's delivery",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )
        # -- set from the daemon's state just before each /metrics scrape (harvester.web.state) -------
        self.source_up = Gauge(
            "harvester_source_up",
            "1 when the source is connected (or finished a bounded input)",
            ["source"],
            registry=r,
        )
        self.source_reconnects = Counter(
            "harvester_source_reconnects_total",
            "Reconnects a source reported: supervisor restarts, dropped streams, new gateway sessions",
            ["source", "reason"],
            registry=r,
        )
        self.source_lag = Gauge(
            "harvester_source_lag_seconds",
            "Now minus the created time of the newest post stored from the source",
            ["source"],
            registry=r,
        )
        self.event_loop_lag = Gauge(
            "harvester_event_loop_lag_seconds",
            "How late the event loop ran a timer, last measurement",
            registry=r,
        )
        self.ws_clients = Gauge("harvester_ws_clients", "Connected WebSocket clients", registry=r)
        self.ws_messages = Counter(
            "harvester_ws_messages_total", "Messages queued to WebSocket clients", registry=r
        )
        self.ws_dropped = Counter(
            "harvester_ws_clients_dropped_total",
            "WebSocket clients disconnected because their buffer was full",
            registry=r,
        )
        self.http_requests = Counter(
            "harvester_http_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux /proc)
        ProcessCollector(registry=r)
