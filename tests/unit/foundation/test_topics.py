"""topics.yaml parsing and the pure diff behind `vigil topics diff|apply`."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.topics.diff import ActualTopic, plan_topics
from app.topics.spec import TopicsFileError, TopicSpec, load_topics_file
from tests.conftest import REPO

REQUIRED = {"events", "events-dlq", "status", "alerts", "metrics", "actions", "action-results", "actions-dlq",
            "members", "_vigil_schemas"}


def spec(name: str = "t", partitions: int = 3, **config: str) -> TopicSpec:
    return TopicSpec(name=name, partitions=partitions, replication=1, config=config)


def test_repo_topics_file__covers_every_required_topic() -> None:
    topics = load_topics_file(REPO / "topics.yaml").by_name()
    assert set(topics) >= REQUIRED
    for compacted in ("status", "members", "_vigil_schemas"):
        assert topics[compacted].config["cleanup.policy"] == "compact"


def test_defaults__apply_and_can_be_overridden(tmp_path: Path) -> None:
    f = tmp_path / "topics.yaml"
    f.write_text("defaults: {partitions: 4, config: {retention.ms: 1000}}\n"
                 "topics:\n  a: {}\n  b: {partitions: 1, config: {cleanup.policy: compact}}\n")
    t = load_topics_file(f).by_name()
    assert (t["a"].partitions, t["a"].config) == (4, {"retention.ms": "1000"})
    assert (t["b"].partitions, t["b"].config) == (1, {"retention.ms": "1000", "cleanup.policy": "compact"})


@pytest.mark.parametrize(("text", "message"), [
    ("topics: [a, b]", "expected a mapping"),
    ("topics: {a: {partitions: 0}}", "topic a: partitions"),
    ("topics: {a: {partitons: 2}}", "topic a: partitons"),
    ("extra: 1\ntopics: {}", "unknown top-level key"),
])
def test_invalid_file__names_topic_and_field(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "topics.yaml"
    f.write_text(text)
    with pytest.raises(TopicsFileError, match=message):
        load_topics_file(f)


def test_plan__creates_missing() -> None:
    plan = plan_topics([spec("new")], {})
    assert [(c.action, c.topic) for c in plan.changes] == [("create", "new")]


def test_plan__no_changes_when_in_sync() -> None:
    plan = plan_topics([spec(**{"cleanup.policy": "compact"})],
                       {"t": ActualTopic("t", 3, 1, {"cleanup.policy": "compact"})})
    assert plan.empty and plan.changes == []


def test_plan__grows_partitions_and_reconciles_configs() -> None:
    plan = plan_topics([spec(partitions=6, **{"retention.ms": "10"})],
                       {"t": ActualTopic("t", 3, 1, {"retention.ms": "99"})})
    assert [(c.action, c.partitions, c.config) for c in plan.changes] == [
        ("add-partitions", 6, {}), ("set-config", None, {"retention.ms": "10"})]


def test_plan__never_shrinks_or_deletes_only_warns() -> None:
    plan = plan_topics([spec(partitions=2)], {"t": ActualTopic("t", 8, 1, {}), "other": ActualTopic("other", 1, 1, {})})
    assert [c.action for c in plan.changes] == ["warn"]
    assert plan.empty
    assert "cannot shrink" in plan.changes[0].detail


def test_plan__growing_a_stateful_topic_is_refused_with_the_way_out() -> None:
    stateful = TopicSpec(name="events", partitions=12, replication=1, stateful=True)
    plan = plan_topics([stateful], {"events": ActualTopic("events", 6, 1, {})})
    assert [(c.action, c.partitions) for c in plan.changes] == [("refuse", 12)]
    assert plan.empty and plan.refused == plan.changes
    assert "--allow-repartition events" in plan.changes[0].detail and "README" in plan.changes[0].detail


def test_plan__growing_a_stateful_topic_when_allowed() -> None:
    stateful = TopicSpec(name="events", partitions=12, replication=1, stateful=True)
    plan = plan_topics([stateful], {"events": ActualTopic("events", 6, 1, {})}, allow_repartition={"events"})
    assert [(c.action, c.partitions) for c in plan.changes] == [("add-partitions", 12)]
    assert not plan.refused


def test_repo_topics_file__the_topics_agents_keep_state_by_are_stateful() -> None:
    stateful = {t.name for t in load_topics_file(REPO / "topics.yaml").topics if t.stateful}
    assert stateful == {"events", "status", "actions", "rules-repartition", "runs"}
