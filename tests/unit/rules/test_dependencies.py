"""Dependency declarations: parsing with file:line errors, the cycle check, hot reload, and the pure
decisions of app.rules.inhibit (which firings a failing dependency holds, equal:, settle, release)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.rules.dependencies import (
    DEFAULT_FAILING,
    DependencyLoader,
    DependencySet,
    check_dependencies,
    may_overlap,
    parse_dependencies_text,
)
from app.rules.inhibit import (
    DependencyView,
    HeldVerdict,
    dependent_matches,
    judge_firing,
    judge_held,
    judge_settled,
)

from .conftest import event
from .stage_helpers import write_rules

RACK = """\
dependencies:
  - name: rack-switch
    dependents: {tags.rack: "*", tags.role: {ne: switch}}
    depends_on: {tags.role: switch, name: ping}
    equal: [tags.rack]
    settle: 10s
"""


def parse(text: str) -> DependencySet:
    found, errors = parse_dependencies_text(textwrap.dedent(text), "deps.yaml")
    assert errors == []
    return DependencySet(tuple(found))


def errors_of(text: str) -> list[str]:
    return [str(e) for e in parse_dependencies_text(textwrap.dedent(text), "deps.yaml")[1]]


def status(subject: str, name: str, state: str, since: int, **tags: str) -> dict[str, Any]:
    return {"subject": subject, "name": name, "state": state, "since": since, "last_seen": since, "tags": tags}


def view_of(deps: DependencySet, *rows: dict[str, Any]) -> DependencyView:
    view = DependencyView(deps)
    for row in rows:
        view.apply(f"{row['subject']}/{row['name']}", row)
    return view


def host_event(subject: str, rack: str, time: int = 1_000, name: str = "ping") -> dict[str, Any]:
    return event(subject, name, time, tags={"rack": rack, "role": "host"}, severity=2)


# --- parsing ---------------------------------------------------------------------------------------

def test_defaults() -> None:
    (dep,) = parse("""\
        dependencies:
          - name: web-db
            dependents: {subject: "web*"}
            depends_on: {subject: db1, name: postgres}
        """).dependencies
    assert dep.failing == DEFAULT_FAILING == {"CRITICAL", "EXPIRED"}
    assert dep.settle_ms == 30_000 and dep.equal == ()
    assert dep.location == "deps.yaml:2"


@pytest.mark.parametrize(("body", "message"), [
    ("    dependents: {subject: a}\n    depends_on: {subject: b}\n    equals: [tags.rack]\n",
     "deps.yaml:5: dependency d: unknown key `equals` (did you mean `equal`?)"),
    ("    dependents: {subject: \"web[12\"}\n    depends_on: {subject: b}\n",
     "deps.yaml:3: dependency d: dependents: bad glob 'web[12': `[` without a closing `]`"),
    ("    depends_on: {subject: b}\n", "dependency d: `dependents:` is required"),
    ("    dependents: {subject: a}\n    depends_on: {hostname: b}\n", "deps.yaml:4: match: unknown field `hostname`"),
    ("    dependents: {subject: a}\n    depends_on: {subject: b}\n    equal: [rack]\n",
     "deps.yaml:5: dependency d: equal: unknown field `rack`"),
    ("    dependents: {subject: a}\n    depends_on: {subject: b}\n    failing: [DOWN]\n",
     "deps.yaml:5: dependency d: failing: unknown state(s) DOWN"),
    ("    dependents: {subject: a}\n    depends_on: {subject: b}\n    failing: [OK]\n", "OK is never failing"),
    ("    dependents: {subject: a}\n    depends_on: {subject: b}\n    settle: soon\n",
     "deps.yaml:5: dependency d: settle"),
])
def test_invalid_declaration__file_line_and_what_to_do(body: str, message: str) -> None:
    errors = errors_of("dependencies:\n  - name: d\n" + body)
    assert any(message in e for e in errors), errors


def test_not_a_dependency_file() -> None:
    assert errors_of("rules: []\n") == ["deps.yaml:1: expected a top-level mapping with a `dependencies:` list"]


# --- cycles ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "overlap"), [
    ({"subject": "db1"}, {"subject": "web*"}, False),
    ({"subject": "db1"}, {"subject": "db*"}, True),
    ({"tags.role": "switch"}, {"tags.role": {"ne": "switch"}}, False),
    ({"tags.role": "switch"}, {"tags.role": {"in": ["host", "vm"]}}, False),
    ({"tags.role": "switch"}, {"tags.rack": "*"}, True),  # nothing says a switch has no rack
    ({"subject": "sw-*"}, {"subject": "web-*"}, False),
    ({"subject": {"regex": "^db"}}, {"subject": "web1"}, True),  # not judged: may overlap
])
def test_may_overlap(a: dict[str, Any], b: dict[str, Any], overlap: bool) -> None:
    assert may_overlap(a, b) is overlap and may_overlap(b, a) is overlap


def test_self_cycle__named_with_its_path() -> None:
    # Every rack host depends on its switch, and a switch has a rack too: two switches of one rack
    # would hold back each other's alerts.
    errors = errors_of_dir("""\
        dependencies:
          - name: rack-switch
            dependents: {tags.rack: "*"}
            depends_on: {tags.role: switch}
            equal: [tags.rack]
        """)
    assert len(errors) == 1 and "dependency cycle: rack-switch" in errors[0]
    assert errors[0].endswith(errors[0][errors[0].index("tell the sides apart"):])
    assert ":2: dependency cycle: rack-switch (" in errors[0]


def test_cycle_through_two_files__path_named(tmp_path: Path) -> None:
    write_rules(tmp_path / "dependencies", """\
        dependencies:
          - name: web-on-db
            dependents: {tags.role: web}
            depends_on: {tags.role: db}
        """, "a.yaml")
    write_rules(tmp_path / "dependencies", """\
        dependencies:
          - name: db-on-web
            dependents: {tags.role: db}
            depends_on: {tags.role: web}
        """, "b.yaml")
    (error,) = [str(e) for e in check_dependencies(tmp_path)]
    assert "dependency cycle: web-on-db (" in error and "-> db-on-web (" in error and error.count("->") == 2
    assert "a.yaml:2" in error and "b.yaml:2" in error


def test_chain_without_cycle_once_sides_are_told_apart(tmp_path: Path) -> None:
    switch_router = """\
  - name: switch-router
    dependents: {tags.role: switch}
    depends_on: {tags.role: router}
"""
    write_rules(tmp_path / "dependencies", RACK + switch_router, "net.yaml")
    # a router may have a rack tag too: then it depends on its rack's switch, which depends on it
    (error,) = [str(e) for e in check_dependencies(tmp_path)]
    assert "rack-switch (" in error and "-> switch-router (" in error
    write_rules(tmp_path / "dependencies", RACK.replace("{ne: switch}", "{not_in: [switch, router]}") + switch_router,
                "net.yaml")
    assert check_dependencies(tmp_path) == []


def errors_of_dir(text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_rules(Path(tmp) / "dependencies", text, "d.yaml")
        return [str(e) for e in check_dependencies(tmp)]


def test_duplicate_name_across_files(tmp_path: Path) -> None:
    write_rules(tmp_path / "dependencies", RACK, "a.yaml")
    write_rules(tmp_path / "dependencies", RACK, "b.yaml")
    (error,) = [str(e) for e in check_dependencies(tmp_path)]
    assert "b.yaml:2: duplicate dependency name `rack-switch`: already defined at" in error


def test_hot_reload_keeps_last_good_version(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "dependencies", RACK, "rack.yaml")
    loader = DependencyLoader(tmp_path)
    assert loader.reload() and [d.name for d in loader.dependencies.dependencies] == ["rack-switch"]
    assert not loader.reload()  # nothing changed
    write_rules(tmp_path / "dependencies", RACK.replace("settle: 10s", "settle: 10 parsecs"), "rack.yaml")
    assert not loader.reload()
    assert loader.errors and loader.dependencies.dependencies[0].settle_ms == 10_000
    write_rules(tmp_path / "dependencies", RACK.replace("settle: 10s", "settle: 5s"), "rack.yaml")
    assert loader.reload() and loader.errors == [] and loader.dependencies.dependencies[0].settle_ms == 5_000
    path.unlink()
    assert loader.reload() and not loader.dependencies


def test_rules_loader_accepts_dependency_files(tmp_path: Path) -> None:
    from app.rules.loader import check_rules

    write_rules(tmp_path / "dependencies", RACK, "rack.yaml")
    assert check_rules(tmp_path) == []


# --- decisions -------------------------------------------------------------------------------------

def test_only_dependents_with_the_equal_values_match() -> None:
    deps = parse(RACK)
    assert [m.equal for m in dependent_matches(deps, host_event("h1", "r1"), "vigil.Event")] == [("r1",)]
    assert dependent_matches(deps, event("h1", "ping", 0, tags={"role": "host"}), "vigil.Event") == []  # no rack
    switch = event("sw1", "ping", 0, tags={"rack": "r1", "role": "switch"})
    assert dependent_matches(deps, switch, "vigil.Event") == []  # not a dependent


def test_failing_dependency_of_the_same_rack_holds() -> None:
    deps = parse(RACK)
    view = view_of(deps, status("sw1", "ping", "CRITICAL", 900, rack="r1", role="switch"),
                   status("sw2", "ping", "OK", 100, rack="r2", role="switch"))
    held = judge_firing(dependent_matches(deps, host_event("h1", "r1"), "vigil.Event"), view, "h1", 1_000)
    assert held.kind == "hold"
    (cause,) = held.causes
    assert (cause.dependency, cause.identity, cause.state, cause.since_ms) == \
        ("rack-switch", "sw1/ping", "CRITICAL", 900)
    other = judge_firing(dependent_matches(deps, host_event("h9", "r2"), "vigil.Event"), view, "h9", 1_000)
    assert other.kind == "settle" and other.at_ms == 11_000  # its switch is fine: waits for the settle


@pytest.mark.parametrize(("state", "failing", "held"), [
    ("CRITICAL", None, True), ("EXPIRED", None, True), ("UNKNOWN", None, False), ("WARNING", None, False),
    ("UNKNOWN", "[UNKNOWN]", True), ("CRITICAL", "[UNKNOWN]", False),
])
def test_which_states_count_as_failing(state: str, failing: str | None, held: bool) -> None:
    deps = parse(RACK.replace("settle: 10s", "settle: 0s") + (f"    failing: {failing}\n" if failing else ""))
    view = view_of(deps, status("sw1", "ping", state, 900, rack="r1", role="switch"))
    verdict = judge_firing(dependent_matches(deps, host_event("h1", "r1"), "vigil.Event"), view, "h1", 1_000)
    assert verdict.kind == ("hold" if held else "send")


def test_never_held_by_its_own_subject() -> None:
    deps = parse("""\
        dependencies:
          - name: on-db
            dependents: {name: app}
            depends_on: {name: db}
            settle: 0s
        """)
    view = view_of(deps, status("h1", "db", "CRITICAL", 0), status("h2", "db", "OK", 0))
    assert judge_firing(dependent_matches(deps, event("h1", "app", 5), "vigil.Event"), view, "h1", 5).kind == "send"


def test_settle__a_failure_that_arrives_later_still_counts_within_the_settle() -> None:
    deps = parse(RACK)
    view = view_of(deps, status("sw1", "ping", "OK", 0, rack="r1", role="switch"))
    matches = dependent_matches(deps, host_event("h1", "r1", 1_000), "vigil.Event")
    assert judge_firing(matches, view, "h1", 1_000).kind == "settle"
    # the switch's failure, folded on another partition, arrives after the host's firing
    view.apply("sw1/ping", status("sw1", "ping", "CRITICAL", 1_500, rack="r1", role="switch"))
    assert judge_settled(matches, view, "h1", 1_000).kind == "hold"
    # a switch failing only after the settle is not the host's cause
    view.apply("sw1/ping", status("sw1", "ping", "CRITICAL", 11_001, rack="r1", role="switch"))
    assert judge_settled(matches, view, "h1", 1_000).kind == "send"


def test_release_on_recovery__only_while_the_dependent_still_fails() -> None:
    deps = parse(RACK)
    view = view_of(deps, status("sw1", "ping", "CRITICAL", 900, rack="r1", role="switch"),
                   status("h1", "ping", "CRITICAL", 1_000, rack="r1"),
                   status("h2", "ping", "CRITICAL", 1_000, rack="r1"))
    matches = dependent_matches(deps, host_event("h1", "r1"), "vigil.Event")
    causes = list(judge_firing(matches, view, "h1", 1_000).causes)
    assert judge_held(causes, view, "h1/ping", 5_000, 10_000).kind == "wait"
    view.apply("sw1/ping", status("sw1", "ping", "OK", 20_000, rack="r1", role="switch"))
    # recovered at 20 s: wait the settle, the hosts' own recoveries may still be on their way
    assert judge_held(causes, view, "h1/ping", 21_000, 10_000) == HeldVerdict("wait", 30_000)
    view.apply("h2/ping", status("h2", "ping", "OK", 20_500, rack="r1"))  # h2 recovered with its switch
    assert judge_held(causes, view, "h1/ping", 30_000, 10_000).kind == "release"
    assert judge_held(causes, view, "h2/ping", 30_000, 10_000).kind == "drop"


def test_view_keeps_dependencies_and_what_is_not_ok_only() -> None:
    deps = parse(RACK)
    view = view_of(deps, status("sw1", "ping", "OK", 0, rack="r1", role="switch"),
                   status("h1", "ping", "OK", 0, rack="r1"), status("h2", "ping", "CRITICAL", 0, rack="r1"))
    assert view.row("sw1/ping") is not None and view.row("h1/ping") is None and view.row("h2/ping") is not None
    view.apply("h2/ping", None)  # tombstone
    assert len(view) == 1
    # selectors changed: the view says so (the reader then reads the topic again)
    assert view.set_dependencies(parse(RACK.replace("name: ping", "name: link")))
    assert not view.set_dependencies(parse(RACK.replace("name: ping", "name: link").replace("10s", "20s")))


def test_rules_check_fails_with_file_line_for_a_bad_dependency_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.rules.cli import rules_group

    write_rules(tmp_path, "rules: []\n")
    write_rules(tmp_path / "dependencies", RACK.replace("equal:", "equals:"), "rack.yaml")
    result = CliRunner().invoke(rules_group, ["check", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{tmp_path}/dependencies/rack.yaml:5: dependency rack-switch: unknown key `equals`" in result.output
    write_rules(tmp_path / "dependencies", RACK, "rack.yaml")
    assert CliRunner().invoke(rules_group, ["check", str(tmp_path)]).exit_code == 0


def test_operands_are_not_globs() -> None:
    errors = errors_of("""\
        dependencies:
          - name: d
            dependents: {subject: {regex: "^web[0-9]+$"}, tags.rack: {in: ["[r1]"]}}
            depends_on: {subject: db1}
        """)
    assert errors == []
