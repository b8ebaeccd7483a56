"""Real Apache Kafka (started once per session) and Vigil's schema registry for integration tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.bus.clients import make_admin
from app.config import Settings, load_settings
from app.devstack.kafka import start_private_kafka
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec, load_topics_file
from tests.conftest import REPO, free_port
from tests.integration.outage import OutageStack
from tests.integration.receivers import (
    CARBON_VENV,
    OTELCOL,
    PROMETHEUS,
    GraphiteReceiver,
    OtlpReceiver,
    PrometheusReceiver,
    require_installed,
    start_carbon,
    start_otelcol,
    start_prometheus,
)
from tests.kafka_clients import fail_if_open


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker: VIGIL_TEST_BOOTSTRAP if set, else one we start."""
    existing = os.environ.get("VIGIL_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    node = start_private_kafka(tmp_path_factory.mktemp("kafka-home"), libs_dir=REPO / ".vigil" / "kafka" / "libs")
    try:
        yield node.bootstrap
        # Torn down after every fixture using the broker: a client still open now would print
        # librdkafka's "Connection refused" lines to the end of the process.
        fail_if_open("when the session's broker stops")
    finally:
        node.stop()


@pytest.fixture(scope="session")
def base_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session broker (registry URL filled by the `registry` fixture)."""
    return load_settings(kafka_bootstrap=kafka_bootstrap, state_dir=tmp_path_factory.mktemp("state"),
                         home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def registry_url(base_settings: Settings) -> Iterator[str]:
    """A running Vigil schema registry (in-process, on a free port), storing in the session broker."""
    from app.registry.server import start_registry_in_thread

    settings = base_settings.model_copy(update={"topic_prefix": f"reg-{uuid.uuid4().hex[:6]}-"})
    handle = start_registry_in_thread(settings, host="127.0.0.1", port=free_port())
    yield handle.url
    handle.stop()


@pytest.fixture(scope="session")
def settings(base_settings: Settings, registry_url: str) -> Settings:
    """Settings for the session broker + registry, with every topic of topics.yaml created."""
    s = base_settings.model_copy(update={"schema_registry_url": registry_url})
    specs = load_topics_file(REPO / "topics.yaml").topics
    reconcile(make_admin(s), specs, dry_run=False)
    return s


@pytest.fixture
def new_topic(settings: Settings) -> Callable[..., str]:
    """Factory: create a fresh uniquely-named topic and return its name."""

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        spec = TopicSpec(name=name, partitions=partitions, replication=1, config=config or {})
        reconcile(make_admin(settings), [spec], dry_run=False)
        return name

    return make


@pytest.fixture
def isolated_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with a fresh topic prefix (every topics.yaml topic created under it) and state dir,
    for tests that run built-in stages on the logical topics (events, alerts, ...) in isolation."""
    prefix = f"i{uuid.uuid4().hex[:8]}-"
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": tmp_path / "state"})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    return s


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[OutageStack]:
    """A private broker + registry this module's tests may stop and start (see tests/integration/outage.py)."""
    stack = OutageStack.start(tmp_path_factory.mktemp("outage-home"))
    try:
        yield stack
        stack.stop_registry()
        fail_if_open(f"when the outage stack's broker stops (module {request.module.__name__})",
                     bootstrap=stack.kafka.bootstrap)
    finally:
        stack.close()


@pytest.fixture
def outage(outage_stack: OutageStack) -> OutageStack:
    """The module's outage stack, with broker and registry up at the start of the test."""
    outage_stack.ensure_up()
    return outage_stack


# --- Real metric receivers (tests/integration/receivers.py; `make receivers` installs them) -----


@pytest.fixture(scope="session")
def prometheus_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusReceiver]:
    """A real Prometheus: `.remote_write_url`, `.query(promql)`, `.series(match)`, `.scrape(url)`."""
    require_installed(PROMETHEUS, "prometheus")
    with start_prometheus(tmp_path_factory.mktemp("prometheus")) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def graphite_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphiteReceiver]:
    """A real carbon-cache: plaintext on `.host`:`.port`, `.datapoints(path)` from its whisper files."""
    require_installed(CARBON_VENV / "bin" / "carbon-cache.py", "carbon")
    with start_carbon(tmp_path_factory.mktemp("carbon")) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def otlp_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpReceiver]:
    """A real OpenTelemetry Collector: OTLP/HTTP at `.endpoint`, `.metrics()` every point received."""
    require_installed(OTELCOL, "otelcol")
    with start_otelcol(tmp_path_factory.mktemp("otelcol")) as receiver:
        yield receiver
