"""Gates over the API: `GET /api/v1/gates` and `GET /api/v1/gates/{name}` (the decision now, as
`vigil gate check --json` prints it). Conditions read the server's own status index and silences
(fast at 50,000 identities) and the workers' recent metric windows; the gates themselves come from
the rules directory the server was given (`--rules`, as for backtests).

Every decision is recorded as an ARCHIVE event (audit, and a marker on the charts) unless the
request says `record=false` (what `vigil gate wait` polls with, recording only the outcome).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from app.config import Settings
from app.orchestration.conditions import Selector, Series
from app.orchestration.definitions import DefinitionsLoader
from app.orchestration.gates import decide
from app.orchestration.judges import StatusSummary
from app.orchestration.sources import SourceError, judge_gate
from app.rules.silences import Silence
from app.sdk import EmitError, Emitter
from app.web.hub import LiveHub
from app.web.statusindex import StatusFilter
from app.web.workers import WorkersClient, WorkersError

__all__ = ["GateService", "IndexSource", "get_gate", "list_gates"]

log = logging.getLogger(__name__)


class IndexSource:
    """Conditions read from the live status index, the silences the server keeps and the workers'
    windows. Reads the index on the event loop (its only writer runs there too)."""

    def __init__(self, hub: LiveHub, workers: WorkersClient) -> None:
        self.hub = hub
        self.workers = workers

    async def statuses(self, selector: Selector) -> Sequence[Mapping[str, Any]]:
        flt = StatusFilter(subject=selector.subject, name=selector.name, tags=dict(selector.tags))
        return [row.record for row in self.hub.index.matching(flt)]

    async def status_summary(self, selector: Selector, states: frozenset[str], *, inside: bool) -> StatusSummary:
        """A status or alerts condition's summary from the index's kept tally (see StatusIndex.tally)."""
        flt = StatusFilter(subject=selector.subject, name=selector.name, tags=dict(selector.tags))
        tally = self.hub.index.tally(flt, states, inside=inside)
        return StatusSummary(tally.count, tally.latest_since, [row.record for row in tally.rows])

    async def silences(self) -> Sequence[Silence]:
        return list(self.hub.silences.all())

    async def windows(self, subject: str, name: str, metric: str, last: int) -> Series:
        try:
            found, _missing = await self.workers.windows(subject=subject, name=name, metric=metric, size_ms=None,
                                                         last=last)
        except WorkersError as exc:
            raise SourceError(str(exc)) from exc
        return found


class GateService:
    """The gates of a rules directory and a recorder of decisions."""

    def __init__(self, settings: Settings, definitions: DefinitionsLoader) -> None:
        self.settings = settings
        self.definitions = definitions
        self._emitter: Emitter | None = None

    def record(self, event: Any) -> None:
        """Produce a decision event (blocking: call in a thread)."""
        if self._emitter is None:
            self._emitter = Emitter(self.settings, registry_wait_s=10.0)
        self._emitter.emit(event)

    def close(self) -> None:
        if self._emitter is not None:
            self._emitter.producer.flush(5)
            self._emitter = None


async def list_gates(request: web.Request, service: GateService) -> dict[str, Any]:
    """The gates defined (name, description, where, conditions) and the definition errors."""
    definitions = await asyncio.to_thread(service.definitions.current)
    gates = [{"name": g.name, "description": g.description, "location": g.location,
              "conditions": [c.label for c in g.conditions]} for g in definitions.gates.values()]
    return {"gates": sorted(gates, key=lambda g: g["name"]), "errors": [str(e) for e in definitions.errors]}


async def get_gate(name: str, service: GateService, hub: LiveHub, workers: WorkersClient, *,
                   record: bool) -> dict[str, Any] | None:
    """The decision of gate `name` now (None when there is no such gate)."""
    definitions = await asyncio.to_thread(service.definitions.current)
    gate = definitions.gates.get(name)
    if gate is None:
        return None
    now = int(time.time() * 1000)
    if hub.ready:
        decision = await judge_gate(gate, IndexSource(hub, workers), now)
    else:  # a partial picture must not open a gate
        decision = decide(gate, [], now, problems=["the server is still reading the status topic; ask again"])
    answer = decision.to_json()
    if record:
        try:
            await asyncio.to_thread(service.record, decision.event())
            answer["recorded"] = decision.event().id
        except EmitError as exc:
            log.warning("ui: gate %s: the decision could not be recorded: %s", name, exc)
            answer["recorded"] = None
            answer["record_error"] = str(exc)
    return answer
