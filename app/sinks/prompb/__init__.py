"""Prometheus remote-write 1.0 message classes, generated from remote.proto (see that file)."""

__all__: list[str] = []
