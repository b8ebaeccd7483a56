"""Cost of a threshold read from the lookup hierarchy, per evaluation, beside a literal threshold.

In one process and the same run, a rule's compiled `match` is evaluated over events of 1,000 hosts
(4 roles, 3 datacenters, 2 environments; a 5-level hierarchy host -> role -> dc -> env -> common,
data files for every role, dc and env and for 1 host in 10, all saying 8, so every variant fires
for the same events), with its threshold:

- literal:   metrics.load: {gt: 8}
- lookup:    metrics.load: {gt: "{{ lookup('thresholds.load') }}"}            (resolved without Jinja)
- rendered:  metrics.load: {gt: "{{ lookup('thresholds.load') | float }}"}    (rendered per event)

and, end to end, the rules engine (`simulate`: match, trigger, rendering of the firings' actions)
over the same events with the literal and the lookup rule. CPU time of this process (the machine
is shared): ns per evaluation / per event, and the lookup's extra cost.

    python benchmarks/lookups.py [--evaluations 200000]

Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import emit_json, log

from app.rules.fields import EVENT_TYPE
from app.rules.loader import RuleSet, load_rules
from app.rules.match import Predicate
from app.rules.offline import simulate

__all__ = ["main"]

HOSTS = 1000
ROLES = ("db", "web", "cache", "queue")
DCS = ("fra", "ams", "lon")
ENVS = ("prod", "staging")
HIERARCHY = "levels:\n  - host/{{ subject }}\n  - role/{{ tags.role }}\n  - dc/{{ tags.dc }}\n" \
            "  - env/{{ tags.env }}\n  - common\n"
RULE = """\
rules:
  - name: {name}
    match:
      name: load
      metrics.load: {{gt: {threshold}}}
    actions:
      - print: {{text: "{{{{ event.subject }}}} load {{{{ event.metrics.load }}}}"}}
"""
THRESHOLDS = {
    "literal": "8",
    "lookup": "\"{{ lookup('thresholds.load') }}\"",
    "rendered": "\"{{ lookup('thresholds.load') | float }}\"",
}


def _write_rules(directory: Path) -> None:
    (directory / "data").mkdir(parents=True)
    (directory / "hierarchy.yaml").write_text(HIERARCHY)
    (directory / "data/common.yaml").write_text("thresholds: {load: 8, disk: 90}\n")
    for folder, names in (("role", ROLES), ("dc", DCS), ("env", ENVS)):
        (directory / "data" / folder).mkdir()
        for name in names:
            (directory / "data" / folder / f"{name}.yaml").write_text(f"thresholds: {{load: 8}}\nowner: {name}\n")
    (directory / "data/host").mkdir()
    for host in range(0, HOSTS, 10):
        (directory / "data/host" / f"h{host}.yaml").write_text("thresholds: {load: 8}\n")
    for name, threshold in THRESHOLDS.items():
        (directory / f"{name}.yaml").write_text(RULE.format(name=name, threshold=threshold))


def _events(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    events = []
    for i in range(count):
        host = rng.randrange(HOSTS)
        events.append({"id": f"e{i}", "time": i, "subject": f"h{host}", "name": "load", "kind": "METRIC",
                       "severity": 0, "origin": "", "text": "", "metrics": {"load": rng.uniform(0, 12)},
                       "tags": {"role": ROLES[host % 4], "dc": DCS[host % 3], "env": ENVS[host % 2]},
                       "ttl": None, "extended": None, "trace_id": None})
    return events


def _cpu_ns_per(count: int, run: Callable[[], object]) -> float:
    start = time.process_time_ns()
    run()
    return (time.process_time_ns() - start) / count


def _matching(match: Predicate, events: list[dict[str, Any]]) -> Callable[[], object]:
    return lambda: [match(e, EVENT_TYPE) for e in events]


def _simulating(ruleset: RuleSet, events: list[dict[str, Any]]) -> Callable[[], object]:
    return lambda: simulate(ruleset, events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=200_000)
    parser.add_argument("--engine-events", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _write_rules(directory)
        ruleset, errors = load_rules(directory)
        if errors:
            raise SystemExit("\n".join(map(str, errors)))
        events = _events(args.evaluations)
        results: dict[str, Any] = {}
        matched: dict[str, int] = {}
        for name in THRESHOLDS:
            rule = ruleset.get(name)
            assert rule is not None
            match = rule.match
            matched[name] = sum(1 for e in events[:20_000] if match(e, EVENT_TYPE))  # warms the cache too
            best = min(_cpu_ns_per(len(events), _matching(match, events)) for _ in range(3))
            results[f"match_ns_{name}"] = round(best, 1)
            log(f"match with a {name} threshold: {best:.0f} ns per evaluation")
        engine_events = events[:args.engine_events]
        for name in ("literal", "lookup"):
            only = RuleSet(tuple(r for r in ruleset if r.name == name))
            best = min(_cpu_ns_per(len(engine_events), _simulating(only, engine_events)) for _ in range(2))
            results[f"engine_ns_per_event_{name}"] = round(best, 1)
            log(f"rules engine with the {name} rule: {best / 1000:.2f} us per event")
        results["lookup_extra_ns_per_match"] = round(results["match_ns_lookup"] - results["match_ns_literal"], 1)
        if len(set(matched.values())) != 1:
            raise SystemExit(f"the variants matched different events: {matched}")
        emit_json(results, as_json=args.json)


if __name__ == "__main__":
    main()
