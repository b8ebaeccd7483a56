"""The Prometheus exposition: latest windows as series, the cap with its counter, stale series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.sinks.exposition import LatestWindows
from tests.unit.sinks.conftest import window


def _scrape(latest: LatestWindows) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape through a registry and parse with prometheus_client's own text parser."""
    registry = CollectorRegistry()
    registry.register(latest)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _labels(subject: str, window: str = "10s", name: str = "load", metric: str = "load1"):
    return tuple(sorted({"subject": subject, "name": name, "metric": metric, "window": window}.items()))


def test_the_latest_window_of_each_identity_as_gauges() -> None:
    latest = LatestWindows(max_series=1000, stale_windows=3, on_cut=lambda n: None)
    latest.update([window("web1", start_ms=0, value=1.0), window("web1", start_ms=10_000, value=2.0),
                   window("web1", start_ms=0, size_ms=60_000, value=7.0)])
    latest.update([window("web1", start_ms=0, value=9.0)])  # an older window arriving late changes nothing
    scraped = _scrape(latest)
    assert scraped[("vigil_window_mean", _labels("web1"))] == 2.0
    assert scraped[("vigil_window_count", _labels("web1"))] == 3.0
    assert scraped[("vigil_window_p99", _labels("web1", "1m"))] == 7.0
    assert len(scraped) == 18 and latest.series == 18


def test_the_cap__new_series_past_it_are_cut_and_counted_known_ones_still_move() -> None:
    cut: list[int] = []
    latest = LatestWindows(max_series=20, stale_windows=3, on_cut=cut.append)
    latest.update([window("a", value=1.0), window("b", value=1.0), window("c", value=1.0)])
    assert cut == [9] and latest.series == 18
    latest.update([window("a", start_ms=10_000, value=5.0)])
    scraped = _scrape(latest)
    assert scraped[("vigil_window_mean", _labels("a"))] == 5.0
    assert not any(labels == _labels("c") for _, labels in scraped)


def test_stale_series_go__an_identity_left_behind_by_the_newest_windows() -> None:
    latest = LatestWindows(max_series=1000, stale_windows=3, on_cut=lambda n: None)
    latest.update([window("gone", start_ms=0), window("here", start_ms=0)])
    latest.update([window("here", start_ms=20_000)])
    assert {labels for _, labels in _scrape(latest)} == {_labels("gone"), _labels("here")}
    latest.update([window("here", start_ms=30_000)])  # "gone" is now 3 windows behind
    assert {labels for _, labels in _scrape(latest)} == {_labels("here")}
    assert latest.series == 9


def test_a_full_exposition_makes_room_by_dropping_stale_series_first() -> None:
    cut: list[int] = []
    latest = LatestWindows(max_series=18, stale_windows=1, on_cut=cut.append)
    latest.update([window("old", start_ms=0), window("here", start_ms=0)])
    latest.update([window("here", start_ms=10_000), window("new", start_ms=10_000)])
    assert cut == [] and {labels for _, labels in _scrape(latest)} == {_labels("here"), _labels("new")}
