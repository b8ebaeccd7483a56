"""The enabled push sinks (remote-write, Graphite, OTLP) built from the sinks settings, and what
the sinks stage hands closed windows to: the sinks themselves (senders in threads of the worker)
or one SenderProcess that runs them in a child process (app.sinks.process). Both build them here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from app.sinks.config import PushConfig, SinksConfig
from app.sinks.credentials import otlp_headers, remote_write_auth
from app.sinks.delivery import PushSink
from app.sinks.graphite import GraphiteEncoder, GraphiteTransport, PathTemplate
from app.sinks.metrics import SinkMetrics
from app.sinks.otlp import OtlpEncoder, otlp_transport
from app.sinks.remote_write import RemoteWriteEncoder, remote_write_transport
from app.sinks.types import Encoder, Transport
from app.sinks.windows import ClosedWindow

__all__ = ["Sender", "build_push_sinks", "enabled_push_sections"]


class Sender(Protocol):
    """What the sinks stage offers closed windows to (a PushSink, or a SenderProcess of several)."""

    def offer(self, windows: list[ClosedWindow]) -> None:
        """Hand windows over; never waits."""
        ...

    def send_held(self) -> None:
        """Send partial batches now rather than at their deadline; never waits."""
        ...

    def idle(self) -> bool:
        """Nothing offered waits to be sent."""
        ...

    def close(self) -> None:
        """Stop; what is still in memory goes to the disk buffers."""
        ...


def enabled_push_sections(config: SinksConfig) -> list[tuple[str, PushConfig]]:
    """(name, section) of every enabled push sink, in the order they are built."""
    sections: list[tuple[str, PushConfig]] = [("remote_write", config.remote_write), ("graphite", config.graphite),
                                              ("otlp", config.otlp)]
    return [(name, section) for name, section in sections if section.enabled]


def build_push_sinks(config: SinksConfig, *, state_dir: Path, metrics: SinkMetrics,
                     environ: Mapping[str, str] | None = None) -> list[PushSink]:
    """The enabled push sinks, not started; transports (and credentials, from `environ` or the
    process's environment) only for those. Raises ConfigError for missing credentials; a sink
    built before the error is closed."""
    rw, gr, ot = config.remote_write, config.graphite, config.otlp
    host, _, port = gr.address.rpartition(":")

    def remote_write() -> Transport:
        auth, headers = remote_write_auth(rw.username, environ)
        return remote_write_transport(rw.url, timeout_s=rw.timeout_ms / 1000, auth=auth, headers=headers)

    def graphite() -> Transport:
        return GraphiteTransport(host, int(port), timeout_s=gr.timeout_ms / 1000)

    def otlp() -> Transport:
        return otlp_transport(ot.endpoint, timeout_s=ot.timeout_ms / 1000, headers=otlp_headers(environ))

    parts: dict[str, tuple[Encoder, Callable[[], Transport]]] = {
        "remote_write": (RemoteWriteEncoder(), remote_write),
        "graphite": (GraphiteEncoder(PathTemplate(gr.path_template)), graphite),
        "otlp": (OtlpEncoder(service_name=ot.service_name), otlp)}
    sinks: list[PushSink] = []
    try:
        for name, section in enabled_push_sections(config):
            encoder, make_transport = parts[name]
            directory = section.buffer_dir or Path(state_dir) / "sinks" / name
            sinks.append(PushSink(name, encoder=encoder, transport=make_transport(), config=section,
                                  buffer_dir=directory, metrics=metrics))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
