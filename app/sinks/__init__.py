"""Metric sinks: the closed windows the pipeline publishes on `metrics`, shown to Prometheus
(exposition on the worker's /metrics, remote-write), Graphite (plaintext protocol) and
OpenTelemetry (OTLP/HTTP). Built as one stage from settings (app.sinks.stage, app.stages)."""

__all__: list[str] = []
