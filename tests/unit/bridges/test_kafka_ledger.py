"""KafkaDeliveryLedger without a broker: closing it lets go of its Kafka clients even while the
ledger itself is still held (aiohttp caches the handlers that hold it), and a closed ledger refuses
new claims as unavailable (a 503 for the sender to retry), never as a duplicate."""

from __future__ import annotations

import asyncio

import pytest

from app.bridges.deliveries import DeliveryKey
from app.bridges.kafka_ledger import KafkaDeliveryLedger
from app.bridges.ledger import LedgerUnavailable
from app.config import Settings
from tests.conftest import free_port
from tests.kafka_clients import open_clients


def test_close__lets_go_of_the_clients_and_refuses_new_claims() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"log_level": 0})
    ledger = KafkaDeliveryLedger(settings, window_s=60, lease_s=60, wait_s=1)
    ledger.close()
    ledger.close()  # a second close does nothing
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []
    with pytest.raises(LedgerUnavailable, match="closed"):
        asyncio.run(ledger.admit(DeliveryKey("events/idempotency-key/k", "Idempotency-Key 'k'")))
