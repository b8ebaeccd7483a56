"""GitHub webhooks: signature check (documented test vector) and ARCHIVE events per delivery."""

from __future__ import annotations

from typing import Any

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.github import github_signature, parse_github, verify_github_signature
from app.model.events import Kind, Severity

from .support import data_bytes, data_json

# From GitHub's "Validating webhook deliveries" docs.
DOC_SECRET = "It's a Secret to Everybody"
DOC_PAYLOAD = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_signature__matches_githubs_documented_test_vector() -> None:
    assert github_signature(DOC_SECRET, DOC_PAYLOAD) == DOC_SIGNATURE
    assert verify_github_signature(DOC_SECRET.encode(), DOC_PAYLOAD, DOC_SIGNATURE)


@pytest.mark.parametrize("header", [
    None, "", "sha256=", DOC_SIGNATURE.upper(), DOC_SIGNATURE[:-1] + "0", "sha1=" + DOC_SIGNATURE[7:], "sha256=é",
])
def test_signature__rejects_anything_but_the_exact_value(header: str | None) -> None:
    assert not verify_github_signature(DOC_SECRET, DOC_PAYLOAD, header)


def test_signature__rejects_a_changed_body_or_secret() -> None:
    assert not verify_github_signature(DOC_SECRET, DOC_PAYLOAD + b" ", DOC_SIGNATURE)
    assert not verify_github_signature("another secret", DOC_PAYLOAD, DOC_SIGNATURE)


@pytest.mark.parametrize(("event_type", "tags", "text"), [
    ("push", {"ref": "refs/heads/main", "branch": "main", "commits": "1", "pusher": "dana-ops",
              "forced": "false", "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"},
     "dana-ops pushed 1 commit(s) to refs/heads/main of acme/storefront: Raise checkout timeout to 30s"),
    ("pull_request", {"action": "opened", "number": "42", "state": "open", "merged": "false",
                      "author": "lee-dev", "head_ref": "cdn-images", "base_ref": "main"},
     "pull request #42 opened by lee-dev: Cache product images at the edge"),
    ("deployment", {"action": "created", "environment": "production", "ref": "main", "task": "deploy",
                    "deployment_id": "145988746", "creator": "dana-ops"},
     "deployment of main to production by dana-ops"),
    ("release", {"action": "published", "tag": "v2.7.0", "prerelease": "false", "draft": "false",
                 "author": "dana-ops"},
     "release v2.7.0 published by dana-ops"),
])
def test_documented_payloads__become_archive_events_with_key_fields_as_tags(
        event_type: str, tags: dict[str, str], text: str) -> None:
    body = data_bytes(f"github/{event_type}.json")
    (event,) = parse_github(event_type, body, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
                            received_ms=7).events
    assert (event.subject, event.name, event.kind, event.severity, event.origin, event.time) == (
        "acme/storefront", event_type, Kind.ARCHIVE, Severity.OK, "github", 7)
    assert {k: event.tags.get(k) for k in tags} == tags
    assert event.tags["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert event.text == text
    assert event.extended == data_json(f"github/{event_type}.json")


def test_failed_workflow_run__is_critical() -> None:
    payload = {"action": "completed", "repository": {"full_name": "acme/api"}, "sender": {"login": "bot"},
               "workflow_run": {"name": "CI", "status": "completed", "conclusion": "failure"}}
    (event,) = parse_github("workflow_run", payload).events
    assert (event.severity, event.tags["conclusion"], event.tags["workflow"]) == (Severity.CRITICAL, "failure", "CI")


def test_ping__yields_no_event() -> None:
    assert parse_github("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}).events == []


def test_event_without_repository__uses_the_organization() -> None:
    (event,) = parse_github("organization", {"action": "member_added", "organization": {"login": "acme"}}).events
    assert event.subject == "acme"


@pytest.mark.parametrize(("event_type", "body", "field"), [
    (None, b"{}", "X-GitHub-Event"),
    ("Push!", b"{}", "X-GitHub-Event"),
    ("push", b"{", "body"),
    ("push", b"[]", "body"),
])
def test_bad_deliveries__name_the_field(event_type: str | None, body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_github(event_type, body)
    assert caught.value.field == field


@pytest.mark.parametrize(("payload", "subject"), [
    ({"action": "published", "security_advisory": {"ghsa_id": "GHSA-abcd-efgh-ijkl", "summary": "x"}},
     "GHSA-abcd-efgh-ijkl"),
    ({"action": "member_added", "organization": {"login": "octo-org"}, "sender": {"login": "u"}}, "octo-org"),
    ({"action": "created", "installation": {"account": {"login": "octocat"}}, "sender": {"login": "u"}}, "octocat"),
    ({"action": "revoked", "sender": {"login": "octocat"}}, "octocat"),
    ({"ref": "x"}, "github"),
])
def test_deliveries_without_a_repository__are_accepted_with_a_sensible_subject(
        payload: dict[str, Any], subject: str) -> None:
    event = parse_github("security_advisory" if "security_advisory" in payload else "organization", payload).events[0]
    assert event.subject == subject


@pytest.mark.parametrize(("conclusion", "severity"), [
    ("failure", Severity.CRITICAL), ("timed_out", Severity.CRITICAL), ("startup_failure", Severity.CRITICAL),
    ("success", Severity.OK), ("cancelled", Severity.OK), ("skipped", Severity.OK), (None, Severity.OK),
])
@pytest.mark.parametrize("event_type", ["workflow_job", "workflow_run", "check_run", "check_suite"])
def test_failed_jobs_runs_and_checks__are_critical(event_type: str, conclusion: str | None, severity: Severity) -> None:
    payload = {"action": "completed", "repository": {"full_name": "o/r"},
               event_type: {"name": "build", "status": "completed", "conclusion": conclusion}}
    event = parse_github(event_type, payload).events[0]
    assert event.severity == severity
    assert event.tags.get("conclusion") == conclusion
