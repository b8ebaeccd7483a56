"""Bridges: translate other tools' events (syslog, webhooks, Nagios, Alertmanager, GitHub, Puppet)
into Vigil events. Parsers (`app.bridges.parsers`) are pure; servers hand events to an EventSink."""

__all__: list[str] = []
