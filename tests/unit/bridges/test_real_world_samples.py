"""The parsers on real device messages and tool payloads (see realworld.py for what is scored).

The shared corpora are read in place from `<repo>/../shared/corpora` (or $VIGIL_CORPORA); where
that folder is absent (a CI clone on its own) only the samples in tests/data/bridges are scored and
the corpora test is skipped.
"""

from __future__ import annotations

import pytest

from . import realworld

#: Share of fields right on the whole collection (a correctness threshold, never a timing one).
MIN_RIGHT_PERCENT = 98.0


@pytest.fixture(scope="module")
def report() -> realworld.Report:
    return realworld.score_all()


def test_every_sample__parses_without_crashing(report: realworld.Report) -> None:
    assert report.crashes == []


def test_no_alertmanager_alert__is_rejected(report: realworld.Report) -> None:
    assert report.rejected_alerts == []


def test_whole_collection__has_at_least_98_percent_of_fields_right(report: realworld.Report) -> None:
    whole = report.total()
    misses = [f"{source}.{name} {miss}" for source, names in report.fields.items()
              for name, score in names.items() for miss in score.misses]
    assert whole.percent >= MIN_RIGHT_PERCENT, f"{whole.right}/{whole.total} right\n" + "\n".join(misses)


@pytest.mark.parametrize("field", ["host", "time", "program", "code"])
def test_syslog_fields__are_each_at_least_98_percent_right(report: realworld.Report, field: str) -> None:
    score = report.score("syslog", field)
    assert score.percent >= MIN_RIGHT_PERCENT, "\n".join(score.misses)


def test_shared_corpora__are_scored_when_present(report: realworld.Report) -> None:
    if not realworld.corpora_available():
        pytest.skip(f"shared corpora not found at {realworld.CORPORA}")
    # 133 napalm-logs messages, 21 payload files with 40+ alerts, 60+ GitHub deliveries, 14 reports.
    assert report.samples["syslog"] > 200
    assert report.total("alertmanager").total > 50
    assert report.samples["github"] > 60
    assert report.samples["puppet"] >= 17
