"""Puppet run reports: tagged YAML (safely), JSON, per-resource events and the run's metrics."""

from __future__ import annotations

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.puppet import RUN_EVENT_NAME, load_report, parse_puppet_report
from app.model.events import Kind, Severity

from .support import data_bytes, iso_ms


@pytest.mark.parametrize(("sample", "node"), [
    ("puppet/report_format12.yaml", "web01.example.net"),
    ("puppet/report.json", "web02.example.net"),
])
def test_format12_report__yields_changed_and_failed_resources_and_a_run_metric(sample: str, node: str) -> None:
    result = parse_puppet_report(data_bytes(sample))
    assert result.errors == []
    by_name = {e.name: e for e in result.events}
    assert set(by_name) == {"Service[httpd]", "File[/etc/app/config.ini]", RUN_EVENT_NAME}  # unchanged left out
    assert {e.subject for e in result.events} == {node}
    assert {e.time for e in result.events} == {iso_ms("2024-05-14T09:12:03.518421+00:00")}

    changed = by_name["Service[httpd]"]
    assert (changed.kind, changed.severity, changed.origin) == (Kind.ARCHIVE, Severity.OK, "puppet")
    assert changed.text == "ensure changed 'stopped' to 'running' (corrective)"
    assert {k: changed.tags[k] for k in ("resource_status", "resource_type", "title", "corrective_change",
                                         "environment", "run_status")} == {
        "resource_status": "changed", "resource_type": "Service", "title": "httpd", "corrective_change": "true",
        "environment": "production", "run_status": "failed"}

    failed = by_name["File[/etc/app/config.ini]"]
    assert failed.severity == Severity.CRITICAL
    assert failed.tags["resource_status"] == "failed"
    # The failed change and the error logged for the resource both explain it.
    assert "change from 'absent' to 'file' failed" in failed.text
    assert "Permission denied @ rb_sysopen - /etc/app/config.ini" in failed.text

    run = by_name[RUN_EVENT_NAME]
    assert (run.kind, run.severity) == (Kind.METRIC, Severity.CRITICAL)
    assert {k: run.metrics[k] for k in ("time.total", "resources.changed", "resources.failed", "changes.total",
                                        "events.failure")} == pytest.approx({
        "time.total": 6.270915, "resources.changed": 1, "resources.failed": 1, "changes.total": 1,
        "events.failure": 1})


def test_format3_report__with_ruby_symbols_and_indented_root_is_read() -> None:
    result = parse_puppet_report(data_bytes("puppet/report_format3.yaml"))
    changed, run = result.events
    assert (changed.subject, changed.name, changed.severity, changed.text) == (
        "ezra.example.net", "File[/srv/www/index.html]", Severity.OK, "created")
    assert (run.name, run.severity, run.metrics["time.total"]) == (RUN_EVENT_NAME, Severity.OK, 0.129338)
    assert run.time == iso_ms("2012-03-20T13:36:57.395476+01:00")


def test_ruby_tags__load_as_plain_data() -> None:
    report = load_report(b"--- !ruby/object:Puppet::Transaction::Report\nhost: h\nlevel: !ruby/sym err\n"
                         b"!ruby/sym key: 1\nlist: !ruby/array:Foo [1, 2]\n")
    assert dict(report) == {"host": "h", "level": "err", "key": 1, "list": [1, 2]}


@pytest.mark.parametrize("document", [
    b"--- !!python/object/apply:os.system ['echo pwned']\n",
    b"--- !!python/object/new:collections.OrderedDict [[]]\n",
    b"host: !!python/name:os.system\n",
    b"host: !custom/tag x\n",
])
def test_unsafe_or_unknown_tags__are_refused_not_constructed(document: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        load_report(document)
    assert caught.value.field == "body"


def test_alias_expansion_bomb__is_refused_or_bounded() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    document = ("host: h\nresource_statuses: {}\n" + "\n".join(levels) + "\nmetrics:\n  time:\n    values: *a9\n")
    result = parse_puppet_report(document.encode())
    assert [e.name for e in result.events] == [RUN_EVENT_NAME]  # the bomb is never walked into


@pytest.mark.parametrize(("document", "field"), [
    (b"- just\n- a list\n", "body"),
    (b"host: [unclosed\n", "body"),
    (b"time: 2024-01-01\n", "host"),
    (b"host: h\nresource_statuses: [1]\n", "resource_statuses"),
    (b"host: h\ntime: 'not a time'\n", "time"),
    (b"\xff\xfe", "body"),
    (b"{\"host\": ", "body"),
])
def test_bad_reports__name_the_field(document: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_puppet_report(document)
    assert caught.value.field == field


def test_malformed_resource_status__is_reported_and_the_rest_still_counts() -> None:
    document = (b"host: h\nstatus: changed\nresource_statuses:\n  Exec[x]: 17\n"
                b"  Service[y]:\n    changed: true\n    resource_type: Service\n")
    result = parse_puppet_report(document)
    assert [e.name for e in result.events] == ["Service[y]", RUN_EVENT_NAME]
    assert [(e.index, e.field) for e in result.errors] == [(0, "resource_statuses['Exec[x]']")]


def test_run_that_failed_before_applying__still_reports_counts() -> None:
    (run,) = parse_puppet_report({"host": "h", "status": "failed", "resource_statuses": {}}).events
    assert (run.severity, run.metrics) == (Severity.CRITICAL, {"resources.failed": 0.0, "resources.changed": 0.0})


OLD_AGENT_REPORT = """--- !ruby/object:Puppet::Transaction::Report
host: old.example.net
logs:
- !ruby/object:Puppet::Util::Log
  level: :err
  message: "Failed to retrieve current state of resource: Unmanageable state"
  source: //Node[old]/base/Service[network/ntp]
metrics:
  resources: !ruby/object:Puppet::Util::Metric
    name: resources
    values:
    - - :failed
      - Failed
      - 1
time: 2009-09-30 08:49:36.474988 +02:00
"""

NOOP_REPORT = """--- !ruby/object:Puppet::Transaction::Report
  host: noop.example.net
  kind: apply
  status: unchanged
  resource_statuses:
    "File[/tmp/a]": !ruby/object:Puppet::Resource::Status
      changed: false
      failed: false
      out_of_sync: true
      events:
        - !ruby/object:Puppet::Transaction::Event
          message: "current_value absent, should be file (noop)"
          status: noop
    "File[/tmp/b]": !ruby/object:Puppet::Resource::Status
      changed: false
      failed: false
      events: []
  time: 2011-11-18 04:35:22.936280 +00:00
"""


def test_report_without_status__gets_it_from_failed_resources_and_error_logs() -> None:
    events = {e.name: e for e in parse_puppet_report(OLD_AGENT_REPORT).events}
    run = events[RUN_EVENT_NAME]
    assert (run.tags["run_status"], run.tags["run_status_derived"]) == ("failed", "true")
    assert run.severity == Severity.CRITICAL
    assert run.metrics["resources.failed"] == 1.0  # ":failed" (format 0) read as "failed"
    failed = events["Service[network/ntp]"]  # known only from the error log that names it
    assert (failed.severity, failed.tags["resource_status"]) == (Severity.CRITICAL, "failed")
    assert "Unmanageable state" in failed.text


@pytest.mark.parametrize(("body", "status"), [
    ("host: h\ntime: 2024-01-01T00:00:00Z\n", "unchanged"),
    ("host: h\nlogs:\n- level: err\n  message: Could not retrieve catalog\n  source: Puppet\n", "failed"),
    ("host: h\nresource_statuses:\n  'File[/x]': {changed: true}\n", "changed"),
])
def test_derived_status__follows_what_the_report_contains(body: str, status: str) -> None:
    run = next(e for e in parse_puppet_report(body).events if e.name == RUN_EVENT_NAME)
    assert run.tags["run_status"] == status


def test_noop_run__pending_changes_become_events_tagged_noop() -> None:
    events = {e.name: e for e in parse_puppet_report(NOOP_REPORT).events}
    assert set(events) == {"File[/tmp/a]", RUN_EVENT_NAME}
    pending = events["File[/tmp/a]"]
    assert (pending.severity, pending.tags["resource_status"], pending.tags["noop"]) == (Severity.OK, "noop", "true")
    assert pending.text == "current_value absent, should be file (noop)"
    run = events[RUN_EVENT_NAME]
    assert (run.tags["run_status"], run.metrics["resources.noop_pending"]) == ("unchanged", 1.0)
    assert "1 pending (noop)" in run.text
