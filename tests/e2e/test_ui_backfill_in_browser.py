"""The UI itself, in headless Chromium: asset graph, select the features asset, backfill a range."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

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


def dismiss_community_dialog(page: Page) -> None:
    """The UI offers "Join the Dagster community" once, at a moment of its choosing: skip it whenever."""
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").click(timeout=UI_TIMEOUT_MS),
    )


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
            dismiss_community_dialog(page)
            page.goto(f"{services.url}/locations/flightdelay/asset-groups/features", timeout=UI_TIMEOUT_MS)
            asset = page.get_by_text("flight_features", exact=True).first
            expect(asset).to_be_visible(timeout=UI_TIMEOUT_MS)
            shot(page, "1-asset-graph")

            asset.click(timeout=UI_TIMEOUT_MS)
            materialize = page.get_by_role("button", name=re.compile("Materialize selected"))
            expect(materialize).to_be_enabled(timeout=UI_TIMEOUT_MS)
            materialize.click(timeout=UI_TIMEOUT_MS)
            dialog = page.get_by_role("dialog").last
            expect(dialog).to_contain_text(
                "Launch runs to materialize features / flight_features", timeout=UI_TIMEOUT_MS
            )
            partitions = dialog.get_by_placeholder(re.compile("ex: 2013-01-01"))
            partitions.fill(f"[{FIRST}...{LAST}]", timeout=UI_TIMEOUT_MS)
            partitions.press("Enter", timeout=UI_TIMEOUT_MS)
            expect(dialog).to_contain_text("10 partitions", timeout=UI_TIMEOUT_MS)
            expect(dialog).to_contain_text("Backfills all partitions in a single run", timeout=UI_TIMEOUT_MS)
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
