"""Prometheus metrics of one app, in a registry of its own so two apps in a process do not mix counts.

They are served on a port of their own (`serving.app.create_metrics_app`), not the API's, so a
NetworkPolicy can admit Prometheus to them and nothing else, and clients to the API and not to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ServingMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "serving_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "serving_request_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "serving_client_disconnects",
            "Requests whose client left before its answer, e.g. mid-upload (status 499 in serving_requests).",
            ["endpoint"],
            registry=self.registry,
        )
        self.refused = Counter(
            "serving_refused_requests",
            "Requests refused before an endpoint ran, by reason "
            "(headers_too_large, header_timeout, invalid_http, concurrency).",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "serving_requests_in_flight",
            "Requests being answered now (probes and the OpenAPI document not counted).",
            registry=self.registry,
        )
        self.predictions = Counter(
            "serving_predictions",
            "Flights scored, by model version.",
            ["model_version"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "serving_batch_flights",
            "Flights per accepted predict request.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
            registry=self.registry,
        )
        self.model_version = Gauge(
            "serving_model_version",
            "Registry version of the model being served (0: none).",
            registry=self.registry,
        )
        self.snapshot_last_day = Gauge(
            "serving_snapshot_last_day_timestamp_seconds",
            "Start (UTC) of the last day of data in the online snapshot being served.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "serving_reloads",
            "Reload attempts by trigger and outcome (swapped, unchanged, not_ready, failed).",
            ["trigger", "outcome"],
            registry=self.registry,
        )
        self.model_refusals = Counter(
            "serving_model_refusals",
            "Model versions refused at a reload, by version and check (files, md5, load, probe, weights, try).",
            ["model_version", "check"],
            registry=self.registry,
        )
        self.model_fallback = Gauge(
            "serving_model_fallback",
            "1 while the version served stands in for a champion that was refused (see /readyz), else 0.",
            registry=self.registry,
        )
        self.unknown_values = Counter(
            "serving_unknown_values",
            "Request values the model had never seen (flagged in the answer, or refused), by field.",
            ["field"],
            registry=self.registry,
        )
        self.nonfinite_predictions = Counter(
            "serving_nonfinite_predictions",
            "Non-finite probabilities a model answered; their requests got a 500 and were not logged.",
            ["model_version"],
            registry=self.registry,
        )
