"""The UI itself, in headless Chromium: asset graph, select the features asset, backfill a range."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from devtools.services import dagster_services
from orchestration.partitions import range_tags
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


def dismiss_community_dialog(page: Page) -> None:
    """The UI offers "Join the Dagster community" once, at a moment of its choosing: skip it whenever."""
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").click(),
    )


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


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
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            dismiss_community_dialog(page)
            page.goto(f"{services.url}/locations/flightdelay/asset-groups/features")
            expect(page.get_by_text("flight_features", exact=True).first).to_be_visible()
            shot(page, "1-asset-graph")

            page.get_by_text("flight_features", exact=True).first.click()
            expect(page.get_by_role("button", name=re.compile("Materialize selected"))).to_be_enabled()
            page.get_by_role("button", name=re.compile("Materialize selected")).click()
            dialog = page.get_by_role("dialog").last
            expect(dialog).to_contain_text("Launch runs to materialize features / flight_features")
            dialog.get_by_placeholder(re.compile("ex: 2013-01-01")).fill(f"[{FIRST}...{LAST}]")
            dialog.get_by_placeholder(re.compile("ex: 2013-01-01")).press("Enter")
            expect(dialog).to_contain_text("10 partitions")
            expect(dialog).to_contain_text("Backfills all partitions in a single run")
            shot(page, "2-backfill-dialog")
            dialog.get_by_role("button", name="Launch backfill").click()

            deadline = time.monotonic() + 60
            while not services.backfill_ids():
                assert time.monotonic() < deadline, "the dialog launched no backfill"
                time.sleep(0.5)
            [backfill] = services.backfill_ids()
            page.goto(f"{services.url}/runs/b/{backfill}")
            expect(page.get_by_text("flight_features").first).to_be_visible()
            shot(page, "3-backfill-launched")
            try:
                expect(page.get_by_text("100% completed").first).to_be_visible(timeout=240_000)
                # The status badge of a backfill whose runs all succeeded reads "Succeeded".
                status = page.get_by_text("Status", exact=True).locator("xpath=..")
                expect(status.first).to_contain_text("Succeeded")
            finally:
                shot(page, "4-backfill-completed")
            assert services.backfill_status(backfill) in ("COMPLETED", "COMPLETED_SUCCESS")
            browser.close()

    days = data.store.read("features/flight_features").get_column("flight_date").unique().sort().to_list()
    assert days == [FIRST + dt.timedelta(days=i) for i in range(10)]
