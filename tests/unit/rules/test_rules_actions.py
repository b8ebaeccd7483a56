"""Action rendering: templates in the sandbox, failures as RenderFailure, deterministic ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from app.model.events import Action
from app.model.ids import deterministic_id
from app.rules.actions import RenderedAction, RenderFailure, render_actions
from app.rules.engine import Firing
from app.rules.offline import OfflineResult

from .conftest import alert, event, one_rule, ruleset_from

Run = Callable[..., OfflineResult]


def render_one(param: str, record: dict[str, Any] | None = None, rule_body: str = "match: {name: load}") -> Any:
    """Render one template param for one matching event; the RenderedAction's value or the failure."""
    yaml_text = one_rule(rule_body + f"\nactions: [{{print: {{p: {json.dumps(param)}}}}}]")
    ruleset = ruleset_from(yaml_text)
    firing = Firing("r", "web1/load", {"subject": "web1", "name": "load"}, "match", "event:1",
                    record or event(metrics={"load1": 2.5}, tags={"class": "client"}), "vigil.Event", 21.5, 1000)
    (result,) = render_actions(firing, ruleset.rules[0])
    return result.params["p"] if isinstance(result, RenderedAction) else result


@pytest.mark.parametrize(("template", "expected"), [
    ("plain text", "plain text"),
    ("{{ event.subject }}", "web1"),
    ("{{ event.tags.class }}", "client"),
    ("{{ event.metrics.load1 * 2 }}", "5.0"),
    ("{{ value }}", "21.5"),
    ("{{ value | round(0) | int }}", "22"),
    ("{{ rule.name }}", "r"),
    ("{{ group }}", "web1/load"),
    ("{{ group.subject }}", "web1"),
    ("{{ trigger.kind }}:{{ trigger.id }}", "match:event:1"),
    ("{{ time }}", "1000"),
    ("{{ type }}", "vigil.Event"),
    ("{% if value > 20 %}high{% else %}ok{% endif %}", "high"),
    ("{{ event.tags.missing | default('none') }}", "none"),
    ("{{ event.tags | tojson }}", '{"class": "client"}'),
    ("<{{ '<b>' }}>", "<<b>>"),  # no HTML escaping
])
def test_render__templates(template: str, expected: str) -> None:
    assert render_one(template) == expected


def test_render__data_is_the_parsed_extended_json() -> None:
    record = event(extended=json.dumps({"deploy": {"version": "1.2"}}))
    assert render_one("{{ data.deploy.version }}", record) == "1.2"


def test_render__event_values_are_never_evaluated_as_templates() -> None:
    record = event(text="{{ 7 * 7 }}")
    assert render_one("{{ event.text }}", record) == "{{ 7 * 7 }}"


@pytest.mark.parametrize(("template", "reason"), [
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{{ event.__class__ }}", "SecurityError"),
    ("{{ cycler.__init__.__globals__ }}", "SecurityError"),
    ("{{ event.tags.update({'x': 1}) }}", "SecurityError"),  # immutable: templates cannot change events
    ("{{ 'x' * 100000000 }}", "SecurityError"),
    ("{{ 2 ** 100000 }}", "SecurityError"),
    ("{% for i in range(100000) %}{{ 'abcdefgh' }}{% endfor %}", "exceeds"),
    ("{{ nope }}", "UndefinedError"),
    ("{{ event.tags.missing }}", "UndefinedError"),
    ("{{ event.nope.deeper }}", "UndefinedError"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_render__failures_drop_the_action_with_a_reason(template: str, reason: str) -> None:
    result = render_one(template)
    assert isinstance(result, RenderFailure)
    assert reason in result.reason and "params.p" in result.reason
    assert "dropped" in str(result)


def test_render__nested_params_rendered_recursively(run: Run) -> None:
    yaml_text = one_rule("""
        match: {name: load}
        actions:
          - fire_event: {subject: lb, data: {reason: "on {{ event.subject }}", list: ["{{ value }}", 3, true]}}
    """)
    (action,) = run(yaml_text, [event()]).actions
    assert action.params == {"subject": "lb", "data": {"reason": "on web1", "list": ["None", 3, True]}}


def test_render__one_failing_action_does_not_drop_the_others(run: Run) -> None:
    yaml_text = one_rule("""
        match: {name: load}
        actions: [{print: {a: "{{ nope }}"}}, {print: {b: ok}}]
    """)
    result = run(yaml_text, [event()])
    assert [a.params for a in result.actions] == [{"b": "ok"}]
    assert [(f.action_index, f.type) for f in result.failures] == [(0, "print")]


@pytest.mark.parametrize(("params", "expected_target"), [
    ("{}", "web1"),
    ("{target: 'lb-{{ event.tags.dc }}'}", "lb-eu"),
    ("{target: fixed}", "fixed"),
])
def test_target__template_defaulting_to_subject(run: Run, params: str, expected_target: str) -> None:
    (action,) = run(one_rule(f"match: {{name: load}}\nactions: [{{print: {params}}}]"),
                    [event(tags={"dc": "eu"})]).actions
    assert action.target == expected_target
    assert "target" not in action.params


def test_target__empty_is_a_failure(run: Run) -> None:
    result = run(one_rule("match: {name: load}\nactions: [{print: {target: '{{ \"\" }}'}}]"), [event()])
    assert result.actions == [] and "target rendered empty" in result.failures[0].reason


def test_action__ids_are_deterministic_from_rule_group_trigger_and_index(run: Run) -> None:
    yaml_text = one_rule("match: {name: load}\nactions: [{print: {}}, {print: {}}]")
    first = run(yaml_text, [event(time=1), event(time=2)]).actions
    again = run(yaml_text, [event(time=1), event(time=2)]).actions
    assert [a.id for a in first] == [a.id for a in again]
    assert len({a.id for a in first}) == 4
    trigger_id = f"event:{event(time=1)['id']}"
    assert first[0].id == deterministic_id("r", "web1/load", trigger_id, "0")


def test_action__event_and_trace_ids(run: Run) -> None:
    traced = event(trace_id="trace-1")
    (a,) = run(one_rule("match: {name: load}"), [traced]).actions
    assert (a.event_id, a.trace_id) == (traced["id"], "trace-1")
    (b,) = run(one_rule("match: {name: load}"), [event()]).actions
    assert b.trace_id == b.event_id == event()["id"]
    (c,) = run(one_rule("status: {to: CRITICAL}"), [alert(cause_event_id="ev-9")]).actions
    assert (c.event_id, c.trace_id) == ("ev-9", "ev-9")


def test_action__deadline_and_conversion_to_the_action_record(run: Run) -> None:
    yaml_text = one_rule("match: {name: load}\nactions: [{http: {url: 'http://x/{{ event.subject }}', deadline: 5m}}]")
    (rendered,) = run(yaml_text, [event(time=1_000)]).actions
    assert rendered.deadline_ms == 1_000 + 300_000
    record = rendered.to_action()
    assert isinstance(record, Action)
    assert json.loads(record.params) == {"url": "http://x/web1"}
    assert (record.id, record.rule, record.type, record.target, record.group_key, record.deadline) == (
        rendered.id, "r", "http", "web1", "web1/load", 301_000)
    assert record.time == 1_000


def test_render__absence_firing_renders_about_the_last_event(run: Run) -> None:
    yaml_text = one_rule("""
        match: {name: heartbeat}
        absent_for: 1m
        actions: [{print: {msg: "{{ event.subject }} silent {{ value | int }}s; last tag {{ event.tags.v }}"}}]
    """)
    result = run(yaml_text, [event("h1", "heartbeat", 0, tags={"v": "7"})], until_ms=120_000)
    assert [a.params["msg"] for a in result.actions] == ["h1 silent 60s; last tag 7"]
