"""A bridge's current dependency failures for /healthz (app.bridges.problems)."""

from __future__ import annotations

from app.bridges.problems import KAFKA, REGISTRY, Problems


def test_a_failure_is_kept_with_its_start_until_the_dependency_answers() -> None:
    now = [100.0]
    problems = Problems(clock=lambda: now[0])
    problems.failed(KAFKA, "queue full")
    now[0] = 103.0
    problems.failed(KAFKA, "delivery timed out")  # the same outage goes on
    now[0] = 110.0
    assert problems.lines() == ["Kafka: delivery timed out (for 10 s)"]
    problems.cleared(KAFKA)
    assert problems.lines() == []


def test_a_success_about_something_else_does_not_clear_a_failure() -> None:
    problems = Problems(clock=lambda: 0.0)
    problems.failed(REGISTRY, "cannot register acme.Deploy", about="acme.Deploy")
    problems.failed(KAFKA, "down")
    problems.cleared(REGISTRY, about="vigil.Event")  # a cached writer proves nothing about the registry
    problems.cleared(KAFKA)
    assert problems.lines() == ["schema registry: cannot register acme.Deploy (for 0 s)"]
    problems.cleared(REGISTRY, about="acme.Deploy")
    assert problems.lines() == []
    problems.failed(REGISTRY, "cannot fetch the latest schema")  # about nothing in particular
    problems.cleared(REGISTRY, about="vigil.Event")
    assert len(problems.lines()) == 1
    problems.cleared(REGISTRY)  # a registry round trip answered
    assert problems.lines() == []
