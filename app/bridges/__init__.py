"""Bridges: translate other tools' events (syslog, webhooks, Nagios, Alertmanager, GitHub, Puppet)
into Vigil events. Parsers (`app.bridges.parsers`) are pure; servers (`http`, `syslog`) hand events
and rejected input to an EventSink (`sink`), which `kafka_sink` implements on Kafka."""

__all__: list[str] = []
