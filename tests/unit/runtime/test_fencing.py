"""Which departed workers an exactly-once worker fences before taking partitions over
(app.runtime.worker.fencing.departed_instances), and how the group's description is read
(app.runtime.worker.group.assignments_of)."""

from __future__ import annotations

from types import SimpleNamespace

from app.runtime.worker.fencing import departed_instances
from app.runtime.worker.group import assignments_of


def test_a_member_seen_before_and_gone_now_is_fenced() -> None:
    assert departed_instances({"app-w0", "app-w1", "app-w2"}, {"app-w0", "app-w2"}, me="app-w0",
                              app_id="app") == ["app-w1"]


def test_nothing_to_fence_while_every_member_seen_is_still_there_or_when_only_new_ones_joined() -> None:
    assert departed_instances({"app-w0", "app-w1"}, {"app-w0", "app-w1"}, me="app-w0", app_id="app") == []
    assert departed_instances({"app-w0"}, {"app-w0", "app-w1"}, me="app-w0", app_id="app") == []


def test_never_itself_nor_members_that_are_not_workers_of_this_app() -> None:
    # a member without a group.instance.id is listed by its member id: no transactional id to fence
    seen = {"app-w0", "app-w1", "rdkafka-4f1c2d", "other-w1"}
    assert departed_instances(seen, set(), me="app-w0", app_id="app") == ["app-w1"]


def test_the_description_gives_each_member_its_partitions_of_the_source_topics() -> None:
    def member(instance: str | None, member_id: str, parts: list[tuple[str, int]]) -> SimpleNamespace:
        assignment = SimpleNamespace(topic_partitions=[SimpleNamespace(topic=t, partition=p) for t, p in parts])
        return SimpleNamespace(group_instance_id=instance, member_id=member_id, assignment=assignment)

    description = SimpleNamespace(members=[
        member("app-w0", "m0", [("events", 0), ("other", 1)]),
        member(None, "m1", [("events", 1)]),
        SimpleNamespace(group_instance_id="app-w2", member_id="m2", assignment=None),
    ])
    assert assignments_of(description, {"events"}) == {"app-w0": {("events", 0)}, "m1": {("events", 1)},
                                                       "app-w2": set()}
