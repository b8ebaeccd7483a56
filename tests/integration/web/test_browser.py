"""The web UI in a real browser: Playwright drives Debian's Chromium against the UI server on the real
Kafka (with a worker and an executor). Screenshots are saved under .vigil/artifacts/ui/ (printed at
the end of the module): the board, a detail chart, a silence, a trace and a backtest."""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.web.testing import UiStack
from tests.conftest import wait_until
from tests.integration.web.conftest import ARTIFACTS, Api, unique, wait_for_actions, wait_for_status

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: As polyglot machines run it: no sandbox as root, no GPU, nothing reaching out to the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART_HOST = "chart-web1"


@pytest.fixture(scope="module", autouse=True)
def history(stack: UiStack) -> None:
    """Twenty minutes of load on one host, a deploy eight minutes ago and a spike right after it (and a
    milder bump earlier, above a threshold of 5 but below one of 20), emitted first (in event time
    order) while this module's partitions have seen nothing newer."""
    now = int(time.time() * 1000)
    start = now - 20 * 60_000
    deploy = now - 8 * 60_000
    for t in range(start, now, 2_000):
        spike = deploy < t < now - 4 * 60_000
        bump = now - 16 * 60_000 < t < now - 13 * 60_000
        step = t // 2000
        value = (22.0 + step % 7) if spike else (7.0 + step % 3) if bump else (2.0 + step % 5 * 0.4)
        if abs(t - deploy) < 2_000:
            stack.emit(CHART_HOST, "deploy", kind="ARCHIVE", time=deploy, text="v42 rolled out", tags={"role": "web"})
        stack.emit(CHART_HOST, "load", kind="METRIC", time=t, metrics={"load1": value, "load5": value * 0.8},
                   tags={"role": "web", "class": "client"})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (`make chromium` installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    print(f"\nUI screenshots: {ARTIFACTS}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_board_shows_a_critical_event_live_without_a_reload(stack: UiStack, api: Api, page: Any) -> None:
    prefix = unique("fleet")
    states = [0, 0, 1, 0, 3, 0, 0, 1, 0, 0, 0, 0]
    for i, severity in enumerate(states):
        for name in ("load", "disk:/", "http"):
            stack.emit(f"{prefix}-{i:02}", name, kind="STATUS", severity=severity if name == "http" else 0,
                       text=f"{name} check", tags={"role": "web" if i % 2 else "db"})
    wait_for_status(api, f"{prefix}-11", "http", "OK")
    page.goto(f"{stack.ui_url}/?subject={prefix}*")
    page.wait_for_selector("[data-testid=connection]:text('live')")
    page.wait_for_selector(f"[data-testid=status-row][data-subject='{prefix}-11']")
    page.evaluate("window.__noReload = 'still the same page'")
    name_filter = page.locator("input[name=name]")
    name_filter.fill("half-typed fil")  # a form being edited while updates arrive
    host = f"{prefix}-05"
    cause = stack.emit(host, "disk:/", kind="STATUS", severity=2, text="disk 97% full", tags={"role": "db"})
    row = f"[data-testid=status-row][data-subject='{host}'][data-name='disk:/'][data-state=CRITICAL]"
    page.wait_for_selector(row, timeout=30_000)
    assert page.evaluate("window.__noReload") == "still the same page"
    assert name_filter.input_value() == "half-typed fil"
    assert page.evaluate("document.activeElement && document.activeElement.name") == "name"
    page.wait_for_selector("[data-testid=chip-CRITICAL] b:text-is('1')")  # the counts follow the refetch
    name_filter.fill("")
    shot(page, "board")
    page.goto(f"{stack.ui_url}/?subject={prefix}*&view=groups&group=tag:role")
    page.wait_for_selector("[data-testid=status-tile][data-state=CRITICAL]")
    shot(page, "board-groups")
    assert cause


def test_the_detail_chart_renders_with_data_and_a_deploy_marker(stack: UiStack, api: Api, page: Any) -> None:
    def closed_windows() -> bool:
        found = api.get("/metrics", subject=CHART_HOST, name="load", window="10s", since="25m")["windows"]
        return len(found) >= 60

    wait_until(closed_windows, timeout_s=60, message="the chart host's windows")
    page.goto(f"{stack.ui_url}/identity/{CHART_HOST}/load?range=15m&mname=deploy*")
    chart = page.locator("[data-testid=chart-load1]")
    chart.locator("canvas").wait_for()
    page.wait_for_selector("[data-testid=chart-load1][data-markers='1']")
    assert int(chart.get_attribute("data-points") or 0) >= 60
    assert page.locator("[data-testid=chart-load5]").count() == 1
    page.wait_for_selector("[data-testid=recent-events] tbody tr")
    shot(page, "detail-chart")


def test_adding_a_silence_suppresses_a_matching_action(stack: UiStack, api: Api, page: Any) -> None:
    host = unique("maint")
    page.goto(f"{stack.ui_url}/silences")
    page.fill("input[name=field0]", "subject")
    page.fill("input[name=glob0]", host)
    page.fill("input[name=duration]", "1h")
    page.fill("input[name=reason]", "disk replacement")
    page.click("text=Add silence")
    page.wait_for_selector("[data-testid=silence-message]:has-text('added')")
    page.wait_for_selector(f"[data-testid=silence-row]:has-text('subject={host}')")
    silence_id = page.locator("[data-testid=silence-row]", has_text=f"subject={host}").locator("td").first.inner_text()

    def worker_knows() -> bool:
        active = httpx.get(f"{stack.worker_url}/rules").json()["silences"]["active"]
        return any(s["id"] == silence_id for s in active)

    wait_until(worker_knows, message="the worker's rules stage to read the silence")
    shot(page, "silences")
    stack.emit(host, "disk:/", kind="STATUS", severity=2, text="99% full")
    wait_for_actions(api, target=host, count=2, suppressed="true")
    page.goto(f"{stack.ui_url}/actions?target={host}&state=SUPPRESSED")
    page.wait_for_selector("[data-testid=action-row][data-state=SUPPRESSED]")
    assert page.locator("[data-testid=action-row]").count() == 2
    assert "disk replacement" in page.locator("[data-testid=actions]").inner_text()
    shot(page, "actions-suppressed")


def test_a_trace_page_shows_a_rule_firing_end_to_end(stack: UiStack, api: Api, page: Any) -> None:
    host = unique("db")
    cause = stack.emit(host, "disk:/var", kind="STATUS", severity=2, text="97% full", tags={"mount": "/var"})
    wait_for_actions(api, target=host, count=3)
    page.goto(f"{stack.ui_url}/trace/{cause}")
    trace = page.locator("[data-testid=trace]")
    trace.wait_for()
    assert trace.locator("li[data-kind=firing]").count() == 2  # disk-critical, then diagnosis-recorded
    assert trace.locator("li[data-kind=result]").count() == 3
    assert trace.locator("li[data-kind=event]").count() == 2  # the cause and the follow-on event
    text = trace.inner_text()
    assert "disk-critical" in text and "diagnosis-recorded" in text and "SUCCEEDED" in text
    assert "disk.yaml" in text  # where the rule is defined
    shot(page, "trace")


@pytest.mark.skipif(importlib.util.find_spec("app.backtest") is None,
                    reason="the backtest (app.backtest, issue 17) is not in this build yet")
def test_a_backtest_shows_a_difference_between_two_thresholds(stack: UiStack, page: Any) -> None:
    page.goto(f"{stack.ui_url}/backtest")
    page.wait_for_selector("select[name=file] option:text-is('load.yaml')", state="attached")
    page.select_option("select[name=file]", "load.yaml")
    editor = page.locator("textarea[name=rules]")
    editor.fill(editor.input_value().replace("gt: 20", "gt: 5"))
    page.fill("input[name=from]", "-30m")
    page.click("text=Run backtest")
    result = page.locator("[data-testid=backtest-result]")
    result.wait_for(timeout=120_000)
    row = result.locator("[data-testid=backtest-rules] tr", has_text="load-high")
    cells = row.locator("td").all_inner_texts()
    assert int(cells[2]) > int(cells[1])  # B (gt 5) fires more than A (gt 20)
    assert int(cells[4]) > 0  # firings only under B
    shot(page, "backtest")
