"""Score the bridge parsers on real messages and payloads from the tools themselves.

Samples come from two places (see each folder's SOURCE.md):
- the shared corpora in `../shared/corpora` next to the repository (napalm-logs device messages with
  napalm-logs' own expected parse, GitHub's webhook payload examples, Puppet reports, plugin
  perfdata, Alertmanager payloads from receiver projects), used in place;
- the collection in `tests/data/bridges` (syslog-ng, rsyslog, Graylog and Filebeat test messages,
  more webhook payloads, perfdata sent in its own field).

Every sample goes through the parser it is meant for; each field the sample has an expected value for
is counted right or wrong, per source and field: syslog host / time / program / message code,
Alertmanager acceptance / subject / severity, GitHub acceptance / subject / severity, Puppet
acceptance / run status / failed resources / noop changes, Nagios acceptance / subject / severity /
perfdata. Anything other than a ParseError is a crash; a rejected Alertmanager alert is counted apart.

Run `python -m tests.unit.bridges.realworld` for the table; `test_real_world_samples.py` asserts on it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers.alertmanager import SUBJECT_LABELS, parse_alertmanager
from app.bridges.parsers.github import parse_github
from app.bridges.parsers.nagios import parse_nagios
from app.bridges.parsers.puppet import RUN_EVENT_NAME, parse_puppet_report
from app.bridges.parsers.syslog import parse_syslog
from app.model.events import Event, Severity

__all__ = [
    "CORPORA",
    "DATA",
    "RECEIVED_MS",
    "SENDER",
    "FieldScore",
    "Report",
    "corpora_available",
    "main",
    "score_all",
]

REPO = Path(__file__).resolve().parents[3]
#: The shared corpora sit next to the repository (`<repo>/../shared/corpora`), not inside it;
#: VIGIL_CORPORA names another place (a worktree checked out elsewhere).
CORPORA = Path(os.environ.get("VIGIL_CORPORA") or REPO.parent / "shared" / "corpora")
DATA = REPO / "tests" / "data" / "bridges"
#: Receipt time used for every sample: year inference for timestamps without a year is not scored.
RECEIVED_MS = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
#: The address messages arrive from (TEST-NET-1): the subject only when the message names no host.
SENDER = "192.0.2.50"

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_CISCO_CODE = re.compile(r"^[A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*-[0-7]-[A-Z0-9_]+$")
_JUNOS_CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


def corpora_available() -> bool:
    """True when the shared corpora folder exists (CI clones without it skip those samples)."""
    return CORPORA.is_dir()


@dataclass
class FieldScore:
    """How many samples had this field right, and which did not (ids, for reading the misses)."""

    right: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, ok: bool, sample_id: str, detail: str = "") -> None:
        """Count one sample."""
        self.total += 1
        if ok:
            self.right += 1
        else:
            self.misses.append(f"{sample_id}: {detail}" if detail else sample_id)

    @property
    def percent(self) -> float:
        """Share right, in percent (100 when nothing was scored)."""
        return 100.0 * self.right / self.total if self.total else 100.0


@dataclass
class Report:
    """Scores per source and field, plus crashes (exceptions other than ParseError)."""

    fields: dict[str, dict[str, FieldScore]] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    rejected_alerts: list[str] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)

    def score(self, source: str, name: str) -> FieldScore:
        """The score of one field of one source (created on first use)."""
        return self.fields.setdefault(source, {}).setdefault(name, FieldScore())

    def total(self, source: str | None = None) -> FieldScore:
        """All fields (of one source, or of every source) added up."""
        out = FieldScore()
        for src, names in self.fields.items():
            if source is None or src == source:
                for score in names.values():
                    out.right += score.right
                    out.total += score.total
        return out

    def table(self) -> str:
        """A plain-text table of every score, for people and for the issue's closing note."""
        lines = [f"{'source':<13} {'field':<15} {'right':>6} {'total':>6} {'%':>7}"]
        for source, names in self.fields.items():
            for name, score in names.items():
                lines.append(f"{source:<13} {name:<15} {score.right:>6} {score.total:>6} {score.percent:>7.2f}")
        whole = self.total()
        lines.append(f"{'ALL':<13} {'':<15} {whole.right:>6} {whole.total:>6} {whole.percent:>7.2f}")
        lines.append(f"samples: {dict(self.samples)}; crashes: {len(self.crashes)}; "
                     f"rejected Alertmanager alerts: {len(self.rejected_alerts)}")
        return "\n".join(lines)


def _run(report: Report, sample_id: str, parse: Callable[[], Any]) -> Any:
    """Call a parser; a ParseError is returned, any other exception is recorded as a crash."""
    try:
        return parse()
    except ParseError as exc:
        return exc
    except Exception:  # the point of the harness: count crashes instead of stopping at the first
        report.crashes.append(f"{sample_id}: {traceback.format_exc(limit=3)}")
        return None


# -- syslog ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyslogSample:
    """One message and what should be read from it (None: absent; missing key: not scored)."""

    sample_id: str
    message: bytes
    expect: Mapping[str, Any]


def syslog_samples() -> Iterator[SyslogSample]:
    """napalm-logs' messages (expected fields from their yang.json) and tests/data/bridges/syslog."""
    if corpora_available():
        overrides = json.loads((DATA / "syslog" / "napalm_expect_overrides.json").read_text())
        root = CORPORA / "napalm-logs"
        for msg in sorted(root.glob("*/*/*/syslog.msg")):
            rel = str(msg.parent.relative_to(root))
            expected = _napalm_expect(msg.read_bytes(), json.loads((msg.parent / "yang.json").read_text()))
            expected.update({k: v for k, v in overrides.get(rel, {}).items() if not k.startswith("_")})
            yield SyslogSample(f"napalm:{rel}", msg.read_bytes().rstrip(b"\n"), expected)
    for line in (DATA / "syslog" / "real_samples.jsonl").read_text(encoding="utf-8").splitlines():
        sample = json.loads(line)
        yield SyslogSample(sample["id"], sample["message"].encode(), sample["expect"])


def _napalm_expect(raw: bytes, yang: Mapping[str, Any]) -> dict[str, Any]:
    """Expected fields from napalm-logs' own parse (`message_details`).

    host and time are napalm's; the program is napalm's processName, or its `tag` when that tag is
    what the message names in the program position (`tag[pid]:` / `tag:`, or the RFC 5424 APP-NAME);
    the message code is napalm's `tag` when it is a code (Cisco `FAC-SEV-MNEMONIC`, Junos
    `UPPER_SNAKE`). Where napalm's profile reads a field differently from the message, the overrides
    file says what and why.
    """
    details = yang.get("message_details", {})
    text = raw.decode("utf-8", "replace")
    tag = details.get("tag")
    program = details.get("processName")
    if not program and tag and (re.match(r"<\d+>1 ", text) or (
            re.search(rf"(?:^|\s){re.escape(tag)}[\[:]", text) and not re.search(rf"%{re.escape(tag)}", text))):
        program = tag  # napalm's tag holds the program (RFC 5424 APP-NAME, or `tag[pid]:` / `tag:`)
    code = tag if tag and (_CISCO_CODE.match(tag) or _JUNOS_CODE.match(tag)) else None
    return {"host": details.get("host"), "time": _napalm_time(details), "program": program, "code": code}


def _napalm_time(details: Mapping[str, Any]) -> str | None:
    """napalm's `date` + `time` in the form the syslog samples use ("MM-DD hh:mm:ss", with a year
    in front when the message has one, or an ISO instant when it has a zone)."""
    date, clock = str(details.get("date", "")).strip(), str(details.get("time", "")).strip()
    if not date or not clock:
        return None
    hms = clock[:8]
    if "+" in clock or clock.endswith("Z"):
        return f"{date}T{clock}"
    parts = re.split(r"[-\s]+", date)
    if len(parts) == 3 and parts[0].isdigit() and len(parts[0]) == 4:  # 2018 Apr 20 / 2018-7-23 / 2018-Nov-9
        month = int(parts[1]) if parts[1].isdigit() else _MONTHS[parts[1][:3].lower()]
        return f"{parts[0]}-{month:02d}-{int(parts[2]):02d} {hms}"
    if len(parts) == 2:  # Oct 18
        return f"{_MONTHS[parts[0][:3].lower()]:02d}-{int(parts[1]):02d} {hms}"
    return None


def _time_matches(event: Event, expected: str) -> bool:
    """An ISO instant must match to the millisecond; a wall-clock form must match its fields
    (the bridge reads zone-less times as UTC)."""
    if "T" in expected:
        want = datetime.fromisoformat(expected.replace("Z", "+00:00"))
        return event.time == int(want.timestamp() * 1000)
    got = datetime.fromtimestamp(event.time / 1000, tz=UTC)
    if re.match(r"\d{4}-", expected):
        return got.strftime("%Y-%m-%d %H:%M:%S") == expected
    return got.strftime("%m-%d %H:%M:%S") == expected


def _missing(event: Event) -> set[str]:
    return set(filter(None, event.tags.get("vigil.parse.missing", "").split(",")))


def score_syslog(report: Report) -> None:
    """Host, time, program and message code of every syslog sample."""
    count = 0
    for sample in syslog_samples():
        count += 1
        event = _run(report, sample.sample_id,
                     partial(parse_syslog, sample.message, source_host=SENDER, received_ms=RECEIVED_MS))
        expect = sample.expect
        if not isinstance(event, Event):
            for name in ("host", "time", "program", "code"):
                if name in expect:
                    report.score("syslog", name).add(False, sample.sample_id, f"not parsed: {event}")
            continue
        missing = _missing(event)
        if "host" in expect:
            want = expect["host"]
            ok = (event.subject == want and "host" not in missing) if want else \
                (event.subject == SENDER and "host" in missing)
            report.score("syslog", "host").add(ok, sample.sample_id, f"{event.subject!r} != {want!r}")
        if "time" in expect:
            want = expect["time"]
            ok = ("time" in missing and event.time == RECEIVED_MS) if want is None else \
                ("time" not in missing and _time_matches(event, want))
            got_time = datetime.fromtimestamp(event.time / 1000, tz=UTC).isoformat()
            report.score("syslog", "time").add(ok, sample.sample_id, f"{got_time} != {want}")
        for name, tag in (("program", "program"), ("code", "code")):
            if name in expect:
                got = event.tags.get(tag)
                report.score("syslog", name).add(got == expect[name], sample.sample_id, f"{got!r} != {expect[name]!r}")
    report.samples["syslog"] = count


# -- Alertmanager ----------------------------------------------------------------------------------

_SEVERITY_LABELS = {"critical": Severity.CRITICAL, "warning": Severity.WARNING, "info": Severity.OK,
                    "none": Severity.OK}


def _json_files(*roots: Path) -> Iterator[tuple[str, Path]]:
    for root in roots:
        if root.is_dir():
            for path in sorted(root.rglob("*.json")):
                yield f"{root.name}/{path.relative_to(root)}", path


def score_alertmanager(report: Report) -> None:
    """Every alert of every payload: accepted, subject from the label chain, severity."""
    roots = [DATA / "alertmanager"] + ([CORPORA / "alertmanager"] if corpora_available() else [])
    count = 0
    for sample_id, path in _json_files(*roots):
        count += 1
        payload = json.loads(path.read_text(encoding="utf-8"))
        result = _run(report, sample_id, partial(parse_alertmanager, payload, received_ms=RECEIVED_MS))
        alerts = payload.get("alerts", []) if isinstance(payload, dict) else []
        events = list(result.events) if hasattr(result, "events") else []
        errors = {e.index for e in result.errors} if hasattr(result, "errors") else set(range(len(alerts)))
        for index, alert in enumerate(alerts):
            alert_id = f"{sample_id}[{index}]"
            accepted = index not in errors
            report.score("alertmanager", "accepted").add(accepted, alert_id, str(result))
            if not accepted:
                report.rejected_alerts.append(alert_id)
                continue
            event = events.pop(0)
            labels = {k: str(v) for k, v in (alert.get("labels") or {}).items()}
            # The documented chain (README, "Bridges"; alertmanager.SUBJECT_LABELS).
            want = next((labels[k] for k in SUBJECT_LABELS if labels.get(k)), None)
            if want:
                report.score("alertmanager", "subject").add(event.subject == want, alert_id,
                                                            f"{event.subject!r} != {want!r}")
            status = alert.get("status") or payload.get("status")
            level = labels.get("severity", "").lower()
            want_severity = Severity.OK if status == "resolved" else _SEVERITY_LABELS.get(level)
            if want_severity is not None:
                report.score("alertmanager", "severity").add(event.severity == want_severity, alert_id,
                                                             f"{event.severity} != {want_severity}")
    report.samples["alertmanager"] = count


# -- GitHub ----------------------------------------------------------------------------------------

_FAILED = ("failure", "timed_out", "startup_failure", "error")
_CONCLUSION = {"workflow_job": "workflow_job.conclusion", "workflow_run": "workflow_run.conclusion",
               "check_run": "check_run.conclusion", "check_suite": "check_suite.conclusion",
               "deployment_status": "deployment_status.state"}


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _github_subject(payload: Mapping[str, Any]) -> str | None:
    """What the delivery is about, as GitHub's payload documentation describes each object."""
    for path in ("repository.full_name", "organization.login", "enterprise.slug",
                 "installation.account.login", "security_advisory.ghsa_id",
                 "sponsorship.sponsorable.login", "marketplace_purchase.account.login", "sender.login"):
        value = _lookup(payload, path)
        if isinstance(value, str) and value:
            return value
    return None


def score_github(report: Report) -> None:
    """Every payload example: accepted (ping excepted: no event), subject, failure severity."""
    roots = []
    if corpora_available():
        roots.append(CORPORA / "octokit-webhooks")
    roots.append(DATA / "github" / "octokit")
    count = 0
    for sample_id, path in _json_files(*roots):
        event_type = path.parent.name
        if path.name == "signature-vector.json" or event_type == "ping":
            continue
        count += 1
        payload = json.loads(path.read_text(encoding="utf-8"))
        result = _run(report, sample_id,
                      partial(parse_github, event_type, payload, delivery_id="d", received_ms=RECEIVED_MS))
        events = list(result.events) if hasattr(result, "events") else []
        report.score("github", "accepted").add(len(events) == 1, sample_id, str(result))
        if len(events) != 1:
            continue
        event = events[0]
        want = _github_subject(payload)
        report.score("github", "subject").add(event.subject == want, sample_id, f"{event.subject!r} != {want!r}")
        if event_type in _CONCLUSION:
            failed = _lookup(payload, _CONCLUSION[event_type]) in _FAILED
            want_severity = Severity.CRITICAL if failed else Severity.OK
            report.score("github", "severity").add(event.severity == want_severity, sample_id,
                                                   f"{event.severity} != {want_severity}")
    report.samples["github"] = count


# -- Puppet ----------------------------------------------------------------------------------------

def score_puppet(report: Report) -> None:
    """Every report: accepted, run status, failed resources, noop changes (tests/data/.../expect.json)."""
    expectations = json.loads((DATA / "puppet" / "expect.json").read_text())
    count = 0
    for key, expect in expectations.items():
        if key.startswith("_"):
            continue
        where, _, rel = key.partition(":")
        if where == "corpora" and not corpora_available():
            continue
        path = (CORPORA / "puppet" if where == "corpora" else DATA / "puppet") / rel
        count += 1
        result = _run(report, key, partial(parse_puppet_report, path.read_bytes(), received_ms=RECEIVED_MS))
        events = list(result.events) if hasattr(result, "events") else []
        run = next((e for e in events if e.name == RUN_EVENT_NAME), None)
        report.score("puppet", "accepted").add(run is not None, key, str(result))
        if run is None:
            continue
        status = run.tags.get("run_status")
        report.score("puppet", "run_status").add(status == expect["status"], key, f"{status!r} != {expect['status']!r}")
        failed = run.metrics.get("resources.failed")
        report.score("puppet", "failed").add(failed == expect["failed"], key, f"{failed} != {expect['failed']}")
        noop = sum(1 for e in events if e.tags.get("resource_status") == "noop")
        report.score("puppet", "noop").add(noop == expect["noop"], key, f"{noop} != {expect['noop']}")
    report.samples["puppet"] = count


# -- Nagios ----------------------------------------------------------------------------------------

def _nagios_cases() -> Iterator[dict[str, Any]]:
    if corpora_available():
        for line in (CORPORA / "perfdata" / "cases.jsonl").read_text(encoding="utf-8").splitlines():
            yield json.loads(line)
    for line in (DATA / "nagios" / "real_checks.jsonl").read_text(encoding="utf-8").splitlines():
        yield json.loads(line)


def score_nagios(report: Report) -> None:
    """Every check result: accepted, subject, severity, and the perfdata it carries (labels, and
    values where the sample states them in the bridge's units)."""
    count = 0
    for case in _nagios_cases():
        count += 1
        sample_id = case["id"]
        body = {k: v for k, v in case.items() if k not in ("id", "path", "source", "icinga_expect",
                                                           "format_example", "expect")}
        result = _run(report, sample_id, partial(parse_nagios, body, received_ms=RECEIVED_MS))
        events = list(result.events) if hasattr(result, "events") else []
        report.score("nagios", "accepted").add(len(events) == 1, sample_id, str(result))
        if len(events) != 1:
            continue
        event = events[0]
        report.score("nagios", "subject").add(event.subject == case["host"], sample_id, event.subject)
        code = int(case.get("return_code", case.get("exit_status", -1)))
        report.score("nagios", "severity").add(event.severity == code, sample_id, str(event.severity))
        expect = case.get("expect", {})
        if "metrics" in expect:
            ok = all(abs(event.metrics.get(k, float("nan")) - v) <= 1e-9 * max(1.0, abs(v))
                     for k, v in expect["metrics"].items())
            report.score("nagios", "perfdata").add(ok, sample_id, f"{event.metrics} != {expect['metrics']}")
        icinga = case.get("icinga_expect", {})
        if "label" in icinga and "value" in icinga and "unit" not in icinga:
            got = event.metrics.get(icinga["label"])
            report.score("nagios", "perfdata").add(got == icinga["value"], sample_id, f"{got} != {icinga['value']}")
    report.samples["nagios"] = count


def score_all() -> Report:
    """Run every sample through its parser and score it."""
    report = Report()
    for scorer in (score_syslog, score_alertmanager, score_github, score_puppet, score_nagios):
        scorer(report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Print the score table; with `-v`, every miss and crash too."""
    args = sys.argv[1:] if argv is None else argv
    report = score_all()
    print(report.table())
    if "-v" in args:
        for source, names in report.fields.items():
            for name, score in names.items():
                for miss in score.misses:
                    print(f"MISS {source}.{name} {miss}")
        for crash in report.crashes:
            print(f"CRASH {crash}")
    if not corpora_available():
        print(f"(corpora not found at {CORPORA}: only tests/data/bridges was scored)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
