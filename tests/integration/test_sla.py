"""Service levels on a real server process: the built-in prober records samples over
real HTTP (both databases); the external prober sees a stopped server and the report
shows the outage; /status renders without login in real headless Chromium and names
no user or collection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from safehold.store import engine as engine_mod
from tests.conftest import DATABASES, _env_for
from tests.support.server import PASSWORD, Server, add_user, cli

CANARY = "_sla-canary"


@pytest.fixture(params=DATABASES)
def probed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {**_env_for(request.param, request), "SAFEHOLD_SLA_PROBE_SECONDS": "1"}
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    srv = Server(data, env=env).start()
    with srv.client() as c:  # a collection name that must not leak onto /status
        assert c.request("MKCOL", "/dav/files/alice/secret-project-x/").status_code == 201
    _verified_restore(srv)
    yield srv
    srv.stop()


def _verified_restore(server: Server) -> None:
    """A passing drill, so that the page can say "operational" (without one it is
    degraded: no restore has been verified)."""
    deadline = time.monotonic() + 60
    while True:
        proc = cli(server.data_dir, "drill", env=server.env, check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return
        time.sleep(0.5)


def _samples(server: Server) -> list[tuple[float, bool, str]]:
    engine = engine_mod.create(server.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT at, ok, step FROM probe_sample ORDER BY at")).all()
        return [(float(r[0]), bool(r[1]), str(r[2])) for r in rows]
    finally:
        engine.dispose()


def _wait_for_samples(server: Server, n: int, timeout: float = 30.0) -> list[tuple[float, bool, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _samples(server)
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"only {len(_samples(server))} samples after {timeout}s:\n{server.log()}")


def test_builtin_prober_records_samples_and_stays_hidden(probed: Server) -> None:
    rows = _wait_for_samples(probed, 3)
    assert all(ok for _, ok, _ in rows), rows
    assert {step for _, _, step in rows} == {"all"}
    # Its writes are real changes of the internal account, which nobody else sees.
    assert any(path.startswith(f"files/{CANARY}/probe/") for _, _, path in probed.changes())
    with probed.client() as c:
        assert c.request("PROPFIND", f"/dav/files/{CANARY}/", headers={"Depth": "0"}).status_code == 404
    listed = cli(probed.data_dir, "user", "list", env=probed.env).stdout
    assert "alice" in listed and CANARY not in listed
    metrics = httpx.get(probed.url + "/metrics").text
    assert "safehold_sla_verdict 0.0" in metrics
    assert "safehold_sla_availability_percent 100.0" in metrics
    report = json.loads(cli(probed.data_dir, "sla", "report", "--format", "json", env=probed.env).stdout)
    assert report["availability"]["percent"] == 100.0
    assert report["incidents"] == [] and report["credits"]["owed_percent"] == 0.0


def test_status_page_renders_in_chromium_without_login(probed: Server) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    _wait_for_samples(probed, 2)
    raw = httpx.get(probed.url + "/status")
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
    assert "<script" not in raw.text.lower()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox"])
        try:
            page = browser.new_page()
            response = page.goto(probed.url + "/status")
            assert response is not None and response.status == 200
            assert page.locator("#verdict").inner_text() == "All systems operational"
            assert page.locator("#bars .bar").count() == 90
            assert page.locator("#bars .bar.ok").count() == 1  # today, measured and up
            assert page.locator("#incidents").inner_text() == "None"
            rendered = page.content()
        finally:
            browser.close()
    for leaked in ("alice", "bob", "secret-project-x", CANARY, "canary", "personal", "contacts",
                   "file://", str(probed.data_dir)):
        assert leaked not in rendered and leaked not in raw.text, leaked


def _probe_proc(url: str, tmp: Path, samples: Path) -> subprocess.Popen[str]:
    pw = tmp / "probe-password"
    pw.write_text(PASSWORD + "\n")
    return subprocess.Popen([sys.executable, "-m", "safehold", "sla", "probe", "--url", url,
                             "--user", "prober", "--password-file", str(pw), "--interval", "0.5",
                             "--samples", str(samples)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})


def test_external_prober_sees_a_stopped_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "prober")
    server = Server(data).start()
    samples = tmp_path / "samples.db"
    proc = _probe_proc(server.url, tmp_path, samples)
    try:
        time.sleep(3)
        stopped = time.time()
        server.stop()
        time.sleep(4)
        server.start()
        back = time.time()
        time.sleep(3)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        server.stop()
    lines = [json.loads(line) for line in out.splitlines()]
    failed = [s for s in lines if not s["ok"]]
    assert failed and lines[-1]["ok"], (lines, err)
    # Every failure falls in the outage, and says why.
    assert all(stopped - 0.5 <= s["at"] <= back + 0.5 for s in failed), (stopped, back, failed)
    assert all("ConnectionRefusedError" in s["detail"] for s in failed), failed
    report = json.loads(cli(data, "sla", "report", "--format", "json", "--samples", str(samples)).stdout)
    assert report["external_samples"] == len(lines)
    [incident] = report["incidents"]
    assert 4.0 <= incident["seconds"] <= back - stopped + 1.0, (incident, back - stopped)
    assert "external prober" in incident["causes"][0]
    assert report["availability"]["percent"] < 80
    assert report["credits"]["owed_percent"] == 100.0
    md = cli(data, "sla", "report", "--samples", str(samples)).stdout
    # The step that failed first is the one the stop landed in (usually propfind, the
    # first of a probe; get or put when the stop came mid-probe).
    assert "## Incidents" in md and re.search(r"external prober: \w+ failed", md), md
    html = cli(data, "sla", "report", "--format", "html", "--samples", str(samples)).stdout
    assert html.startswith("<!doctype html>") and "Credit owed" in html
