"""Orchestration: gates, runbooks, rolling actions over members, approvals and (with the rules
stage) schedules -- on the same bus as the rest of Vigil, with the executor's once-only ledger.

    conditions.py   conditions over current status, open alerts, silences, metric windows and a
                    rule's own match/register (pure: parse with file:line errors, judge fetched data)
    sources.py      where conditions read from: the UI's status index, or the workers' HTTP API
    gates.py        named gates (YAML beside the rules), their decisions and the decision event
    runbooks.py     runbook definitions: ordered steps with when/wait_for/approve/on_failure
    definitions.py  `gates:` and `runbooks:` in the rules directory, reloaded like the rules
    machine.py      the run state machine (pure): lanes over members, steps, approvals, rolls
    records.py      the `runs` topic (start/approve/cancel/pause/resume) and run snapshots
    orchestrator.py the orchestrator agent on `runs` (in `vigil executor`): runs steps through the
                    executor's ActionRunner and ledger, drives waits and timeouts with timers
    members.py      the members view (compacted `members` topic) that rolls discover targets in
    cli.py          `vigil gate`, `vigil runs`, `vigil approve`
"""

__all__: list[str] = []
