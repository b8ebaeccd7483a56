"""Prometheus metrics of the rules stage, in a registry of its own (one per stage instance, so tests
can build several). The worker serves only its own registry today: see `registry` below."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["StageMetrics"]


class StageMetrics:
    """Counters of firings and their outcomes per rule, and the state of the rule files."""

    def __init__(self) -> None:
        #: to be served on the worker's /metrics beside its own registry
        r = self.registry = CollectorRegistry()
        self.firings = Counter("vigil_rules_firings", "rule firings (after throttling)", ["rule"], registry=r)
        self.actions = Counter("vigil_rules_actions", "actions sent to the actions topic", ["rule"], registry=r)
        self.suppressed = Counter("vigil_rules_actions_suppressed", "actions a silence covered (not sent)",
                                  ["rule"], registry=r)
        self.storm_suppressed = Counter("vigil_rules_storm_suppressed", "firings not acted on by the storm guard "
                                        "(reason: cycle, or a chain of actions too deep)", ["rule", "reason"],
                                        registry=r)
        self.render_failures = Counter("vigil_rules_render_failures", "actions dropped to actions-dlq because a "
                                       "template failed", ["rule"], registry=r)
        self.reloads = Counter("vigil_rules_reloads", "rule sets activated (first load and every change)",
                               registry=r)
        self.reload_failures = Counter("vigil_rules_reload_errors", "reloads that found new errors in rule files",
                                       registry=r)
        self.errors = Gauge("vigil_rules_file_errors", "errors in the rule files as they are on disk now",
                            registry=r)
        self.rules = Gauge("vigil_rules_active", "rules being evaluated", registry=r)
        # dependency-aware alerting (app.rules.inhibit), per dependency declaration
        self.dependency_inhibited = Counter("vigil_rules_dependency_inhibited", "firings held back because a "
                                            "dependency was failing", ["dependency"], registry=r)
        self.dependency_released = Counter("vigil_rules_dependency_released", "held firings sent after their "
                                           "dependency recovered (their dependent still failing)", ["dependency"],
                                           registry=r)
        self.dependency_dropped = Counter("vigil_rules_dependency_dropped", "held firings not sent: their "
                                          "dependent recovered with the dependency", ["dependency"], registry=r)
        self.dependencies = Gauge("vigil_rules_dependencies", "dependency declarations in force", registry=r)
        self.dependency_errors = Gauge("vigil_rules_dependency_file_errors", "errors in the dependency files as "
                                       "they are on disk now", registry=r)
        # lookups (app.lookups)
        self.lookup_misses = Counter("vigil_rules_lookup_misses", "match/when conditions that did not hold because "
                                     "their lookup found no value and gave no default (app.lookups)", ["key"],
                                     registry=r)

    def snapshot(self) -> dict[str, Any]:
        """Current values as plain numbers: totals, and per rule where counted per rule."""
        out: dict[str, Any] = {}
        for family in self.registry.collect():
            per_rule: dict[str, float] = {}
            total = 0.0
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                total += sample.value
                if "rule" in sample.labels:
                    per_rule[sample.labels["rule"]] = sample.value
            out[family.name] = {"total": total, "by_rule": per_rule} if per_rule else total
        return out
