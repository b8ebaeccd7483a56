"""`POST /v1/github`: GitHub webhooks as ARCHIVE events, and the X-Hub-Signature-256 check.

Mapping (origin "github"): subject = what the delivery is about, the first of SUBJECT_PATHS present:
the repository's full name, else the organization, the enterprise, the app installation's account,
the security advisory's GHSA id (global advisories name no repository), the sponsored account, the
Marketplace account, the sender, else "github": a delivery is never refused for naming none.
name = the event type (X-GitHub-Event header), tags = the key fields of that event type (table
below) plus `action`, `sender` and `delivery`, text = a one-line summary, extended = the whole
payload. Severity: CRITICAL for failures GitHub reports (a workflow run, workflow job, check run or
check suite concluding failure / timed_out / startup_failure, a deployment status failure / error),
else OK. `ping` (sent when a hook is created) yields no event.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers._common import (
    ParseResult,
    bounded_json,
    build_event,
    json_body,
    require_mapping,
    tag_text,
)
from app.model.events import Kind, Severity, now_ms

__all__ = [
    "KEY_FIELDS",
    "SIGNATURE_HEADER",
    "SUBJECT_PATHS",
    "github_signature",
    "parse_github",
    "verify_github_signature",
]

ORIGIN = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # digits too: projects_v2_item

#: Per event type: tag name → dotted path into the payload (missing paths are skipped).
KEY_FIELDS: dict[str, dict[str, str]] = {
    "push": {
        "ref": "ref", "before": "before", "after": "after", "pusher": "pusher.name",
        "forced": "forced", "created": "created", "deleted": "deleted", "compare": "compare",
    },
    "pull_request": {
        "number": "pull_request.number", "state": "pull_request.state", "merged": "pull_request.merged",
        "draft": "pull_request.draft", "author": "pull_request.user.login",
        "head_ref": "pull_request.head.ref", "head_sha": "pull_request.head.sha",
        "base_ref": "pull_request.base.ref", "url": "pull_request.html_url",
    },
    "deployment": {
        "deployment_id": "deployment.id", "environment": "deployment.environment",
        "ref": "deployment.ref", "sha": "deployment.sha", "task": "deployment.task",
        "creator": "deployment.creator.login",
    },
    "deployment_status": {
        "state": "deployment_status.state", "environment": "deployment.environment",
        "deployment_id": "deployment.id", "ref": "deployment.ref", "sha": "deployment.sha",
    },
    "release": {
        "tag": "release.tag_name", "release_name": "release.name", "draft": "release.draft",
        "prerelease": "release.prerelease", "target": "release.target_commitish",
        "author": "release.author.login", "url": "release.html_url",
    },
    "workflow_run": {
        "workflow": "workflow_run.name", "status": "workflow_run.status",
        "conclusion": "workflow_run.conclusion", "head_branch": "workflow_run.head_branch",
        "head_sha": "workflow_run.head_sha", "url": "workflow_run.html_url",
    },
    "workflow_job": {
        "job": "workflow_job.name", "workflow": "workflow_job.workflow_name", "status": "workflow_job.status",
        "conclusion": "workflow_job.conclusion", "head_branch": "workflow_job.head_branch",
        "head_sha": "workflow_job.head_sha", "run_id": "workflow_job.run_id", "runner": "workflow_job.runner_name",
        "url": "workflow_job.html_url",
    },
    "check_run": {
        "check": "check_run.name", "status": "check_run.status", "conclusion": "check_run.conclusion",
        "head_sha": "check_run.head_sha",
    },
    "check_suite": {
        "status": "check_suite.status", "conclusion": "check_suite.conclusion",
        "head_branch": "check_suite.head_branch", "head_sha": "check_suite.head_sha",
    },
    "security_advisory": {
        "ghsa_id": "security_advisory.ghsa_id", "cve_id": "security_advisory.cve_id",
        "advisory_severity": "security_advisory.severity", "summary": "security_advisory.summary",
    },
    "organization": {"member": "membership.user.login", "role": "membership.role"},
}
#: Where the subject is read from, in order (dotted paths into the payload).
SUBJECT_PATHS = ("repository.full_name", "organization.login", "enterprise.slug", "installation.account.login",
                 "security_advisory.ghsa_id", "sponsorship.sponsorable.login", "marketplace_purchase.account.login",
                 "sender.login")
DEFAULT_SUBJECT = "github"
#: event type → the field whose value says the thing failed.
_OUTCOME_FIELDS = {
    "deployment_status": "deployment_status.state",
    "workflow_run": "workflow_run.conclusion",
    "workflow_job": "workflow_job.conclusion",
    "check_run": "check_run.conclusion",
    "check_suite": "check_suite.conclusion",
}
_FAILED = frozenset({"failure", "error", "timed_out", "startup_failure"})


def github_signature(secret: bytes | str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`: `sha256=<hex HMAC-SHA256>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_github_signature(secret: bytes | str, body: bytes, header: str | None) -> bool:
    """True if `header` is the valid signature of `body` under `secret` (constant-time compare)."""
    if not header:
        return False
    expected = github_signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def parse_github(event_type: str | None, body: bytes | str | Any, *, delivery_id: str | None = None,
                 received_ms: int | None = None) -> ParseResult:
    """One ARCHIVE event for a webhook delivery (none for `ping`)."""
    if not event_type or not _EVENT_TYPE.match(event_type):
        raise ParseError("X-GitHub-Event", f"missing or not a GitHub event type: {event_type!r:.70}")
    payload = require_mapping(json_body(body), "body")
    if event_type == "ping":
        return ParseResult()

    subject = next((value for value in (_lookup(payload, path) for path in SUBJECT_PATHS)
                    if isinstance(value, str) and value.strip()), DEFAULT_SUBJECT)

    tags = {"action": payload.get("action"), "sender": _lookup(payload, "sender.login"), "delivery": delivery_id}
    for tag, path in KEY_FIELDS.get(event_type, {}).items():
        tags[tag] = _lookup(payload, path)
    if event_type == "push":
        tags["commits"] = len(payload["commits"]) if isinstance(payload.get("commits"), list) else None
        tags.update(_ref_tags(payload.get("ref")))
    clean_tags = {k: tag_text(v) for k, v in tags.items() if v is not None and not isinstance(v, Mapping | list)}

    return ParseResult(events=[build_event(
        "",
        time=received_ms if received_ms is not None else now_ms(),
        subject=subject,
        name=event_type,
        kind=Kind.ARCHIVE,
        severity=_severity(event_type, payload),
        origin=ORIGIN,
        text=_summary(event_type, payload, clean_tags, subject),
        tags=clean_tags,
        extended=bounded_json(payload, "body"),
    )])


def _lookup(payload: Mapping[str, Any], path: str) -> Any:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _ref_tags(ref: Any) -> dict[str, str]:
    if not isinstance(ref, str):
        return {}
    for prefix, tag in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return {tag: ref[len(prefix):]}
    return {}


def _severity(event_type: str, payload: Mapping[str, Any]) -> Severity:
    """Failures GitHub reports (a failed deployment, workflow run or job, check) are CRITICAL."""
    path = _OUTCOME_FIELDS.get(event_type)
    outcome = _lookup(payload, path) if path else None
    return Severity.CRITICAL if isinstance(outcome, str) and outcome in _FAILED else Severity.OK


def _summary(event_type: str, payload: Mapping[str, Any], tags: Mapping[str, str], subject: str) -> str:
    """A one-line description a person can read in an alert or a timeline."""
    repo = _lookup(payload, "repository.full_name") or ""
    who = tags.get("sender", "someone")
    if event_type == "push":
        message = _lookup(payload, "head_commit.message")
        first_line = message.splitlines()[0] if isinstance(message, str) and message else ""
        return f"{who} pushed {tags.get('commits', '0')} commit(s) to {tags.get('ref', '?')} of {repo}" + (
            f": {first_line}" if first_line else "")
    if event_type == "pull_request":
        return f"pull request #{tags.get('number', '?')} {tags.get('action', '')} by {who}: " \
               f"{_lookup(payload, 'pull_request.title') or ''}".rstrip(": ")
    if event_type == "deployment":
        return f"deployment of {tags.get('ref', '?')} to {tags.get('environment', '?')} by {who}"
    if event_type == "release":
        return f"release {tags.get('tag', '?')} {tags.get('action', '')} by {who}".replace("  ", " ")
    if event_type == "workflow_job":
        outcome = tags.get("conclusion") or tags.get("status", "")
        job, workflow = tags.get("job", "?"), tags.get("workflow", "workflow")
        return f"job {job} of {workflow} {outcome} on {repo}".replace("  ", " ")
    if event_type == "security_advisory":
        return f"security advisory {subject} {tags.get('action', '')}: {tags.get('summary', '')}".replace("  ", " ")
    action = tags.get("action")
    return f"{event_type}{' ' + action if action else ''} on {repo or subject} by {who}"
