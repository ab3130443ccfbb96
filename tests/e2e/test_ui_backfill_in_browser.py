"""The UI itself, in headless Chromium: asset graph, select the features asset, backfill a range."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from assets.partitions import range_tags
from devtools.services import RUN_TIMEOUT, dagster_services
from tests.conftest import ASSETS, PROJECT, Platform

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = PROJECT / "test-output" / "ui"
FIRST, LAST = dt.date(2013, 1, 5), dt.date(2013, 1, 14)
# Every wait of the browser, sized for a busy 2-core CI machine: a page of the UI loads its
# scripts and queries from a webserver that shares the cores with the daemon, runs and other
# tests. Playwright's `expect` has a default of its own (5 s), apart from the page's; both are
# set here, and every call passes its timeout too. A wait ends once its condition holds.
UI_TIMEOUT_MS = 120_000
BROWSER_LAUNCH_TIMEOUT_MS = 120_000
BACKFILL_TIMEOUT_MS = RUN_TIMEOUT * 1000  # the backfill's one run, through the page
expect.set_options(timeout=UI_TIMEOUT_MS)
LAUNCH_DIALOG = "Launch runs to materialize features / flight_features"


def dismiss_community_dialog(page: Page) -> list[int]:
    """The UI offers "Join the Dagster community" once, at a moment of its choosing: skip it whenever.

    Returns a counter of the prompts skipped, so a click the prompt swallowed can be told apart.
    """
    skipped = [0]

    def skip() -> None:
        page.get_by_role("button", name="Skip").click(timeout=UI_TIMEOUT_MS)
        skipped[0] += 1

    page.add_locator_handler(page.get_by_text("Join the Dagster community"), skip)
    return skipped


def open_launch_dialog(page: Page, skipped: list[int]) -> Locator:
    """Click "Materialize selected" until its dialog shows; again only if the community prompt
    appeared meanwhile and took the click (seen once on a busy machine)."""
    materialize = page.get_by_role("button", name=re.compile("Materialize selected"))
    dialog = page.get_by_role("dialog").filter(has_text=LAUNCH_DIALOG)
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    expect(materialize).to_be_enabled(timeout=UI_TIMEOUT_MS)
    prompts = skipped[0]
    materialize.click(timeout=UI_TIMEOUT_MS)
    while time.monotonic() < deadline:
        try:
            dialog.wait_for(state="visible", timeout=2_000)
            return dialog
        except PlaywrightTimeoutError:
            if skipped[0] > prompts and not page.get_by_role("dialog").count():
                prompts = skipped[0]
                materialize.click(timeout=UI_TIMEOUT_MS)
    expect(dialog).to_be_visible(timeout=1)
    return dialog


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, timeout=UI_TIMEOUT_MS)


def test_a_features_backfill_launched_from_the_ui_dialog_completes(
    tmp_path: Path, replayed_landing: Path
) -> None:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (.ci/system-packages does)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data = Platform(tmp_path / "data")
    shutil.copytree(replayed_landing, data.landing_dir)
    with dagster_services(tmp_path) as services:
        instance = dg.DagsterInstance.from_config(str(services.home))
        tags = range_tags(dt.date(2013, 1, 1), LAST)
        for selection, run_tags in (
            (["bronze/planes", "bronze/airports", "bronze/airlines"], {}),
            (["bronze/flights", "bronze/weather"], tags),
        ):
            assert dg.materialize(
                ASSETS, selection=selection, resources=data.resources, tags=run_tags, instance=instance
            ).success

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=BROWSER_LAUNCH_TIMEOUT_MS,
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.set_default_navigation_timeout(UI_TIMEOUT_MS)
            skipped = dismiss_community_dialog(page)
            page.goto(f"{services.url}/locations/flightdelay/asset-groups/features", timeout=UI_TIMEOUT_MS)
            asset = page.get_by_text("flight_features", exact=True).first
            expect(asset).to_be_visible(timeout=UI_TIMEOUT_MS)
            shot(page, "1-asset-graph")

            asset.click(timeout=UI_TIMEOUT_MS)
            dialog = open_launch_dialog(page, skipped)
            expect(dialog).to_contain_text(LAUNCH_DIALOG, timeout=UI_TIMEOUT_MS)
            partitions = dialog.get_by_placeholder(re.compile("ex: 2013-01-01"))
            partitions.fill(f"[{FIRST}...{LAST}]", timeout=UI_TIMEOUT_MS)
            partitions.press("Enter", timeout=UI_TIMEOUT_MS)
            expect(dialog).to_contain_text("10 partitions", timeout=UI_TIMEOUT_MS)
            expect(dialog).to_contain_text(
                "Backfills in multiple runs, with a maximum of 366 partitions per run", timeout=UI_TIMEOUT_MS
            )
            shot(page, "2-backfill-dialog")
            dialog.get_by_role("button", name="Launch backfill").click(timeout=UI_TIMEOUT_MS)

            [backfill] = services.poll(
                services.backfill_ids,
                what="the backfill the dialog launched",
                timeout=UI_TIMEOUT_MS / 1000,
            )
            page.goto(f"{services.url}/runs/b/{backfill}", timeout=UI_TIMEOUT_MS)
            expect(page.get_by_text("flight_features").first).to_be_visible(timeout=UI_TIMEOUT_MS)
            shot(page, "3-backfill-launched")
            try:
                expect(page.get_by_text("100% completed").first).to_be_visible(timeout=BACKFILL_TIMEOUT_MS)
                # The status badge of a backfill whose runs all succeeded reads "Succeeded".
                status = page.get_by_text("Status", exact=True).locator("xpath=..")
                expect(status.first).to_contain_text("Succeeded", timeout=UI_TIMEOUT_MS)
            finally:
                shot(page, "4-backfill-completed")
            assert services.backfill_status(backfill) in ("COMPLETED", "COMPLETED_SUCCESS")
            browser.close()

    days = data.store.read("features/flight_features").get_column("flight_date").unique().sort().to_list()
    assert days == [FIRST + dt.timedelta(days=i) for i in range(10)]
