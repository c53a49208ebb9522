"""The demo web app (examples/demo_app) in a real browser: Debian's headless Chromium driven by
playwright, against the app served by a real uvicorn process (with its outbox relay and its
notification consumer, on the in-memory broker).

Needs /usr/bin/chromium and the playwright package (``./scripts/install-browser``); skipped
without them. Every wait is for an event (the server answers, a row appears, a text shows),
bounded by ``tests.support.PATIENCE``; nothing sleeps "long enough".
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "artifacts" / "demo-complete.png"
WAIT_MS = PATIENCE * 1000  # playwright's unit
ITEM_DELAY = "0.15"  # seconds per order in the served app
NOTE_DONE = ["order_shipped", "published ✓", "consumed ✓"]
"""The chips of an order's notification once the consumer handled it."""
ONCE = {"written": 1, "published": 1, "consumed": 1}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium (./scripts/install-browser)",
        allow_module_level=True,
    )
if importlib.util.find_spec("playwright") is None:
    pytest.skip(
        "the playwright package is not installed (./scripts/install-browser)",
        allow_module_level=True,
    )

from playwright.async_api import Page, Request, async_playwright, expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(LONG_TEST_TIMEOUT)]
expect.set_options(timeout=WAIT_MS)


@dataclasses.dataclass
class Server:
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo app in a uvicorn process, on a socket this test bound (no port race)."""
    log = tmp_path_factory.mktemp("demo_server") / "uvicorn.log"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "examples.demo_app.app:app"]
    command += ["--fd", str(sock.fileno()), "--log-level", "warning"]
    with sock, log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DEMO_ITEM_DELAY": ITEM_DELAY},
            pass_fds=[sock.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Server(f"http://127.0.0.1:{port}", log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the demo server exited:\n{served.log_text()}")
        # The socket listens from the start: the request waits until uvicorn accepts it.
        return httpx.get(f"{served.url}/api/stats", timeout=10).status_code == 200

    try:
        wait_until(
            answers,
            f"the demo app (uvicorn) at {served.url} to answer GET /api/stats",
            retry_on=(httpx.HTTPError,),
            details=lambda: f"its log so far:\n{served.log_text()}",
        )
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=PATIENCE)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh page in a fresh headless Chromium; uncaught page errors fail the test."""
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        try:
            context = await browser.new_context(viewport={"width": 960, "height": 900})
            context.set_default_timeout(WAIT_MS)
            context.set_default_navigation_timeout(WAIT_MS)
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
        finally:
            await browser.close()
    assert errors == [], "the page raised errors"


# Installed in every document of a page before its own scripts: records, in the order they
# happen, the first "consumed ✓" of a row and the status "Complete".
TRACK_STEPS = """
window.steps = [];
new MutationObserver(() => {
  const note = (step) => { if (!window.steps.includes(step)) window.steps.push(step); };
  if (document.querySelector("#items .chip.step[data-step=consumed][data-done=true]")) {
    note("consumed");
  }
  const status = document.getElementById("status");
  if (status && status.textContent === "Complete") note("complete");
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
"""

# Installed in every document of a page before its own scripts: records each value the
# percentage takes (as a number), so a test can tell a bar that fills from one that restarts.
TRACK_PERCENT = """
window.percents = [];
new MutationObserver(() => {
  const shown = document.getElementById("percent");
  if (!shown) return;
  const value = parseInt(shown.textContent, 10);
  if (window.percents[window.percents.length - 1] !== value) window.percents.push(value);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


async def percents(page: Page) -> list[int]:
    """The values the percentage took in the current document, from the first non-zero one."""
    values: list[int] = await page.evaluate("window.percents")
    while values and values[0] == 0:
        values.pop(0)
    return values


async def stats(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=PATIENCE) as client:
        response = await client.get(f"{server.url}/api/stats")
    response.raise_for_status()
    return response.json()


async def start_batch(page: Page, count: int) -> str:
    """Start a batch from the form; return the job id the page shows."""
    await page.fill("#count", str(count))
    await page.click("#start")
    await expect(page.locator("#job-id")).to_have_text(re.compile(r"\S{20,}"))
    return await page.locator("#job-id").inner_text()


async def rows(page: Page) -> list[dict[str, Any]]:
    """The order rows of the page: position, order id, the chips shown for it."""
    return await page.locator("#items li").evaluate_all(
        """items => items.map(li => ({
            position: Number(li.dataset.position),
            order: li.dataset.order,
            chips: [...li.querySelectorAll(".chip")].map(chip => chip.textContent),
        }))"""
    )


async def saved_job(page: Page) -> dict[str, Any]:
    return json.loads(await page.evaluate("sessionStorage.getItem('cqrs-demo:job')"))


async def wait_for_rows(page: Page, at_least: int) -> None:
    await page.wait_for_function(
        f"document.querySelectorAll('#items li').length >= {at_least}", timeout=WAIT_MS
    )


async def wait_for_animations(page: Page) -> None:
    """Wait until no CSS transition or animation runs (the bar's width, a row appearing)."""
    await page.wait_for_function("document.getAnimations().length === 0", timeout=WAIT_MS)


async def wait_for_notifications(page: Page, count: int) -> None:
    """Wait until every order row shows its notification published and consumed."""
    await expect(page.locator("#items li .chip.step")).to_have_count(2 * count)
    await expect(page.locator("#items li .chip.step[data-done=false]")).to_have_count(0)


async def assert_completed(page: Page, count: int) -> list[dict[str, Any]]:
    """The page shows the finished batch: full bar, summary, every order once, in order, each
    with its notification published and consumed once."""
    await expect(page.locator("#percent")).to_have_text("100 %")
    await expect(page.locator("#summary")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("Complete")
    await expect(page.locator("#sum-items")).to_have_text(str(count))
    await expect(page.locator("#sum-events")).to_have_text(str(2 * count))
    await wait_for_notifications(page, count)
    await expect(page.locator("#sum-published")).to_have_text(str(count))
    await expect(page.locator("#sum-consumed")).to_have_text(str(count))
    await expect(page.locator("#sum-elapsed")).to_have_text(re.compile(r"^\d+\.\d s$"))
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#pipeline")).to_have_text(
        "Notifications: outbox → relay → in-memory broker → consumer. 0 waiting in the outbox."
    )
    shown = await rows(page)
    assert [row["position"] for row in shown] == list(range(1, count + 1))
    assert len({row["order"] for row in shown}) == count
    for row in shown:
        assert row["chips"] == ["OrderShipped", "InvoiceIssued", *NOTE_DONE], row
    return shown


async def assert_processed_once(server: Server, orders: list[str]) -> dict[str, Any]:
    """Each order of this batch, and of every batch before it, was processed exactly once;
    its two domain events were handled and its notification written, published and consumed
    once; the outbox is empty."""
    seen = await stats(server)
    for order in orders:
        assert seen["processed"].get(order) == 1, order
        assert sorted(seen["handled"][order]) == ["InvoiceIssued", "OrderShipped"], order
        assert seen["notifications"][order] == ONCE, order
    assert set(seen["processed"].values()) == {1}, seen["processed"]
    assert all(counts == ONCE for counts in seen["notifications"].values())
    assert seen["outbox"]["pending"] == 0
    assert seen["jobs_running"] == 0
    return seen


def job_connections(seen: dict[str, Any], job_id: str) -> list[tuple[Any, Any, Any]]:
    return [
        (c["last_event_id"], c["last"], c["drop_after"])
        for c in seen["connections"]
        if c["job_id"] == job_id
    ]


async def test_a_batch_fills_the_bar_live_and_ends_with_a_summary(
    server: Server, page: Page, record_property: Any
) -> None:
    await page.add_init_script(TRACK_PERCENT)
    await page.goto(server.url)
    await expect(page.locator("#count")).to_have_value("8")
    job_id = await start_batch(page, 8)
    shown = await assert_completed(page, 8)

    # the bar filled order by order (12, 25, 37, ... 100 %), never going back
    filled = await percents(page)
    assert filled == sorted(filled), filled
    assert set(filled) <= {100 * n // 8 for n in range(1, 9)}, filled
    assert filled[-1] == 100
    assert len(filled) >= 4, f"the bar jumped instead of filling: {filled}"

    seen = await assert_processed_once(server, [row["order"] for row in shown])
    assert job_connections(seen, job_id) == [(None, None, None)]

    await wait_for_animations(page)  # the bar's CSS transition has ended
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    record_property("screenshot", str(SCREENSHOT))
    print(f"screenshot of the completed page: {SCREENSHOT}")


async def test_a_reload_mid_stream_resumes_where_it_was(server: Server, page: Page) -> None:
    # The reload must come before the batch ends: after the 3rd row, 27 orders (4 s of work
    # at ITEM_DELAY) are left, time for a reload even on a loaded machine. (Holding the job
    # until the reload needs a hook in examples/demo_app; see the note in the report.)
    count, reload_after = 30, 3
    streams: list[str] = []

    def note_event_source(request: Request) -> None:
        if request.resource_type == "eventsource":
            streams.append(request.url)

    page.on("request", note_event_source)
    await page.add_init_script(TRACK_PERCENT)
    await page.add_init_script(TRACK_STEPS)
    await page.goto(server.url)
    job_id = await start_batch(page, count)
    await wait_for_rows(page, reload_after)
    assert not await page.locator("#summary").is_visible(), "the batch ended before the reload"

    await page.reload()
    # right after the reload the page shows what it had: no restart from 0
    restored = await page.locator("#items li").count()
    assert restored >= reload_after

    shown = await assert_completed(page, count)
    # the notifications showed up live: an order was consumed while the batch still ran
    assert await page.evaluate("window.steps") == ["consumed", "complete"]
    after_reload = await percents(page)
    assert after_reload[0] >= 100 * reload_after // count, after_reload
    assert after_reload == sorted(after_reload), after_reload
    assert after_reload[-1] == 100
    seen = await assert_processed_once(server, [row["order"] for row in shown])
    # the reloaded page asked for the events after the last one it had seen (?last=N)
    connections = job_connections(seen, job_id)
    assert len(connections) == 2, connections
    assert connections[0] == (None, None, None)
    header, last, _ = connections[1]
    assert header is None, "a new EventSource sends no Last-Event-ID"
    assert last is not None
    assert reload_after <= int(last) <= restored
    assert len(streams) == 2, streams
    assert streams[1].endswith(f"?last={last}"), streams
    assert (await saved_job(page))["resumes"] == 1


async def test_a_dropped_connection_reconnects_with_last_event_id(
    server: Server, page: Page
) -> None:
    await page.goto(f"{server.url}/?drop_after=3")
    job_id = await start_batch(page, 8)

    shown = await assert_completed(page, 8)
    seen = await assert_processed_once(server, [row["order"] for row in shown])
    # the server ended the first response after 3 orders; the same EventSource came back by
    # itself with the id of the last event it had received
    assert job_connections(seen, job_id) == [(None, None, 3), ("3", None, 3)]
    assert (await saved_job(page))["reconnects"] == 1


async def test_a_rejected_order_shows_which_and_why_and_the_bar_turns_red(
    server: Server, page: Page
) -> None:
    await page.goto(server.url)
    await page.check("#reject")
    job_id = await start_batch(page, 4)

    error = page.locator("#error")
    await expect(error).to_be_visible()
    rejected = (await saved_job(page))["orderIds"][3]
    assert rejected.startswith("REJECT-")
    # OrderRejected is one of the demo's safe_errors: the reason reaches the page
    await expect(error).to_have_text(
        f"Order {rejected} was rejected: the warehouse has no stock for it."
    )
    await expect(page.locator("#status")).to_have_text("Failed")
    await expect(page.locator("#percent")).to_have_text("75 %")
    await expect(page.locator("#progress")).to_have_attribute("data-state", "failed")
    # the bar's fill is the page's red (--bad: #c92a2a), no longer the blue gradient
    bar = page.locator("#bar")
    assert await bar.evaluate("e => getComputedStyle(e).backgroundImage") == "none"
    assert await bar.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(201, 42, 42)"
    await expect(page.locator("#summary")).to_be_hidden()
    await expect(page.locator("#start")).to_be_enabled()
    await wait_for_notifications(page, 3)
    shown = await rows(page)
    assert [row["position"] for row in shown] == [1, 2, 3, 4]
    assert [row["chips"][2:] for row in shown[:3]] == [NOTE_DONE] * 3
    assert shown[3]["order"] == rejected
    assert shown[3]["chips"] == ["rejected"]

    seen = await assert_processed_once(server, [row["order"] for row in shown[:3]])
    assert job_connections(seen, job_id) == [(None, None, None)]
    assert not any(order.startswith("REJECT") for order in seen["processed"])
    # its shipment and notification were rolled back together: nothing written, nothing sent
    assert rejected not in seen["notifications"]

    # after a reload the page still shows the failure, the reason and the red bar
    await page.reload()
    await expect(error).to_have_text(
        f"Order {rejected} was rejected: the warehouse has no stock for it."
    )
    await expect(page.locator("#progress")).to_have_attribute("data-state", "failed")
    assert [row["order"] for row in await rows(page)] == [row["order"] for row in shown]


async def test_the_page_fits_a_390_px_phone(server: Server, page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(server.url)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await start_batch(page, 3)
    await assert_completed(page, 3)
    await wait_for_animations(page)
    # the widest state: the run card, the summary, the rows with their chips, the legend
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    overflowing = await page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 390).map(e => e.outerHTML.slice(0, 80))"
    )
    assert overflowing == []


async def test_the_order_count_survives_a_reload(server: Server, page: Page) -> None:
    await page.goto(server.url)
    await expect(page.locator("#count")).to_have_value("8")
    await page.fill("#count", "13")
    await page.reload()
    await expect(page.locator("#count")).to_have_value("13")
    # and the count of a started batch, too
    job_id = await start_batch(page, 2)
    await assert_completed(page, 2)
    await page.reload()
    await expect(page.locator("#count")).to_have_value("2")
    await expect(page.locator("#job-id")).to_have_text(job_id)
