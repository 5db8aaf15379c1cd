"""The web pages in a real headless Chromium (Debian's `chromium`, driven by
Playwright's Python package; no browser download) against a live server: undelete a
contact deleted over CardDAV, roll a calendar back through the preview, and watch the
admin verdict turn red when the S3 replica goes away and green when it returns.
The screenshots in docs/screenshots/ (shown in README.md and docs/web.md) are taken here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATABASES, _env_for
from tests.support.server import PASSWORD, Server, add_user, cli

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CARD = (b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\n"
        b"FN:Grace Hopper\r\nN:Hopper;Grace;;;\r\nEMAIL;TYPE=work:grace@example.org\r\n"
        b"NOTE:Invented the first compiler\\, and found the first bug. A long note that \r\n"
        b" is folded over two lines.\r\nEND:VCARD\r\n")
BOOK = "/dav/addressbooks/alice/contacts/"
CAL = "/dav/calendars/alice/personal/"


def _event(uid: str, summary: str, day: int) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART:202612{day:02d}T090000Z\r\n"
            f"DTEND:202612{day:02d}T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n").encode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), "install Debian's chromium (./dev test does)"
    with sync_playwright() as pw:
        # --no-sandbox: the suite runs as root in CI containers, where Chromium's sandbox cannot start.
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser: Any, width: int = 1100, height: int = 800) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30000)
    return page


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _login(page: Any, server: Server, user: str = "alice", shot: bool = False) -> None:
    """With the keyboard alone: the user field has focus, Tab, Enter."""
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")
    if shot:
        _shot(page, "login")
    # autofocus lands a moment after "load" under load: type only once it has.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'user'")
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/")


def test_undelete_a_contact_deleted_over_carddav(browser: Any, server: Server) -> None:
    with server.client() as dav:
        assert dav.put(BOOK + "grace.vcf", content=CARD, headers={"User-Agent": "DAVx5/4.4.2"}).status_code == 201
        changed = CARD.replace(b"grace@example.org", b"grace.hopper@example.org")
        assert dav.put(BOOK + "grace.vcf", content=changed).status_code == 204
        assert dav.delete(BOOK + "grace.vcf", headers={"User-Agent": "DAVx5/4.4.2"}).status_code == 204
        assert dav.get(BOOK + "grace.vcf").status_code == 404
    page = _page(browser)
    _login(page, server, shot=True)
    page.keyboard.press("Tab")  # the skip link comes first and is visible when focused
    focused = page.evaluate("() => [document.activeElement.textContent,"
                            " getComputedStyle(document.activeElement).outlineStyle]")
    assert focused == ["Skip to content", "solid"]
    _shot(page, "home")
    page.get_by_role("link", name="Contacts").click()
    deleted = page.locator("table.deleted")
    assert "grace.vcf" in deleted.inner_text() and "DAVx5/4.4.2" in deleted.inner_text()
    _shot(page, "recently-deleted")
    page.get_by_role("link", name="grace.vcf").click()
    history = page.locator("ol.versions").inner_text()
    assert "Deleted" in history and "grace.hopper@example.org" in history and "email" in history
    _shot(page, "item-history")
    page.go_back()
    page.get_by_role("button", name="Undelete grace.vcf").click()
    assert "brought back grace.vcf" in page.locator(".flash").inner_text()
    with server.client() as dav:
        back = dav.get(BOOK + "grace.vcf")
        assert back.status_code == 200 and back.content == changed  # byte for byte
    page.context.close()

    phone = _page(browser, width=375, height=740)
    _login(phone, server)
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    _shot(phone, "home-phone")
    phone.goto(server.url + "/connect")
    _shot(phone, "connect-phone")
    phone.context.close()


def test_roll_a_calendar_back_with_preview(browser: Any, server: Server) -> None:
    keep, lost, added = _event("keep-1", "Dentist", 3), _event("lost-1", "Team lunch", 4), \
        _event("added-1", "Spam meeting", 5)
    with server.client() as dav:
        for name, body in (("keep.ics", keep), ("lost.ics", lost)):
            assert dav.put(CAL + name, content=body).status_code == 201
        point = server.changes()[-1][0]
        assert dav.put(CAL + "keep.ics", content=keep.replace(b"Dentist", b"Dentist (moved)")).status_code == 204
        assert dav.put(CAL + "added.ics", content=added).status_code == 201
        assert dav.delete(CAL + "lost.ics").status_code == 204
    page = _page(browser)
    _login(page, server)
    page.get_by_role("link", name="Personal").click()
    page.get_by_label("Back to").fill(str(point))
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("table.preview").inner_text()
    assert "revert\tkeep.ics" in preview and "bring back\tlost.ics" in preview
    assert "remove\tadded.ics" in preview
    _shot(page, "rollback-preview")
    with server.client() as dav:  # the preview changed nothing
        assert dav.get(CAL + "lost.ics").status_code == 404
    page.get_by_role("button", name="Roll back (3 changes)").click()
    page.wait_for_selector('[data-job][data-state="done"]')
    assert "1 brought back, 1 reverted, 1 removed" in page.locator('[data-field="message"]').inner_text()
    _shot(page, "rollback-done")
    with server.client() as dav:
        assert dav.get(CAL + "keep.ics").content == keep
        assert dav.get(CAL + "lost.ics").content == lost
        assert dav.get(CAL + "added.ics").status_code == 404
    page.context.close()


@pytest.fixture(params=DATABASES)
def s3_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Any]]:
    """A server whose only replica is an S3 endpoint of its own (so that the test can
    take it away and bring it back) and whose admin is alice."""
    from tests.support.s3 import S3Server
    s3 = S3Server().start()
    env = {**_env_for(request.param, request), **s3.env()}
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    cli(data, "user", "admin", "alice", env=env)
    cli(data, "backup", "init", "--replica", s3.url("web"), "--kit", str(tmp_path / "kit.json"), env=env)
    srv = Server(data, env=env).start()
    try:
        yield srv, s3
    finally:
        srv.stop()
        s3.stop()


def _verdict(page: Any, server: Server, want: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    with server.client() as dav:
        while True:
            dav.put("/dav/files/alice/tick.txt", content=str(time.time()).encode())  # wakes the shipper
            page.goto(server.url + "/admin")
            got = page.locator("[data-verdict]").get_attribute("data-verdict")
            if got == want or time.monotonic() > deadline:
                return str(got)
            time.sleep(1.0)


def test_admin_verdict_follows_the_replica(browser: Any, s3_server: tuple[Server, Any]) -> None:
    server, s3 = s3_server
    page = _page(browser)
    _login(page, server)
    _verdict(page, server, "amber")  # shipped, but no drill yet
    page.get_by_role("button", name="Run drill now").click()
    page.wait_for_selector('[data-job]:not([data-state="running"])', timeout=120000)
    assert page.locator("[data-job]").get_attribute("data-state") == "done", \
        page.locator('[data-field="message"]').inner_text()
    _shot(page, "drill-done")
    assert _verdict(page, server, "green") == "green", page.locator("[data-verdict]").inner_text()
    assert "your data is safe: last verified restore" in page.locator("[data-verdict]").inner_text()
    _shot(page, "admin-green")

    s3.pause()
    assert _verdict(page, server, "red") == "red"
    assert "is failing" in page.locator("[data-verdict]").inner_text()
    _shot(page, "admin-red")

    s3.start()
    assert _verdict(page, server, "green") == "green", page.locator("[data-verdict]").inner_text()
    page.context.close()
