"""An alert in a real Chromium: it shows on the dashboard's card, one click opens it
with its matching events, and acknowledging it (a form with its CSRF token, then the
redirect) changes its status and history."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.alert_seed import alert_ids, copied_to_usb, ingest
from tests.console.browser import Tab, login
from tests.console.seed import add_device
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def copy_alert(console_server: ServerProcess) -> int:
    engine = console_server.engine()
    device_id = add_device(engine, "sales-laptop-42", group="sales")
    ingest(engine, device_id, [copied_to_usb("/media/usb/customers.csv")])
    (alert_id,) = alert_ids(engine, device_id)
    return alert_id


def test_an_operator_opens_an_alert_from_the_dashboard_and_acknowledges_it(
    tab: Tab, copy_alert: int
) -> None:
    page = tab.page
    login(page, "bob", next_="/")
    card = page.locator("#alerts-card")
    expect(card.locator("[data-severity=high] a.n")).to_have_text("1")
    row = card.locator(f"tr[data-alert-id='{copy_alert}']")
    expect(row).to_contain_text("sales-laptop-42")
    row.get_by_role("link", name="File copied to removable media").click()

    page.wait_for_url(f"**/alerts/{copy_alert}")
    expect(page.locator("#alert-status")).to_have_text("Open")
    expect(page.locator("#alert-events tbody tr")).to_have_count(1)
    expect(page.locator("#alert-events")).to_contain_text("/media/usb/customers.csv")

    page.click("#acknowledge")
    page.wait_for_url(f"**/alerts/{copy_alert}?done=acknowledge")
    expect(page.locator("#done")).to_have_text("The alert was acknowledged.")
    expect(page.locator("#alert-status")).to_have_text("Acknowledged")
    expect(page.locator("#acknowledge")).to_have_count(0)
    expect(page.locator("#history li[data-action=status]")).to_contain_text(
        "set the status to Acknowledged"
    )

    # Acknowledged: no longer among the dashboard's open alerts.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#alerts-card [data-severity=high] a.n")).to_have_text("0")
    expect(page.locator(f"#alerts-card tr[data-alert-id='{copy_alert}']")).to_have_count(0)
