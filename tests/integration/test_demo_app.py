"""The demo web app (examples/demo_app) at the ASGI level: no server, no browser.

The app's lifespan is not run here (its SSEShutdown would close the module's jobs, which every
test of this module uses): the ``client`` fixture starts only the notification pipeline (the
outbox relay and the consumer) in the test's event loop, as the lifespan does. Counts are
asserted at the end: every order's notification written once to the outbox, published once,
consumed once, and the outbox's lag back to 0. The RabbitMQ run starts the app in a uvicorn
process with ``DEMO_BROKER``. The browser side is in tests/browser/test_demo_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.demo_app import app as demo
from examples.demo_app import domain, pipeline, store

from tests.support import LONG_TEST_TIMEOUT, PATIENCE, free_port, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seeds" / "002_a6a20ec0fead2227.txt"
ONCE = {"written": 1, "published": 1, "consumed": 1}


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.settings, "item_delay", 0.0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, with its relay and consumer running (as its lifespan runs them)."""
    transport = httpx.ASGITransport(app=demo.app)
    async with (
        demo.notifications,
        httpx.AsyncClient(transport=transport, base_url="http://demo") as client,
    ):
        yield client


def ids(prefix: str, count: int) -> list[str]:
    """Ids no other test uses: the app's ledger lives as long as the module."""
    batch = uuid.uuid4().hex[:8]
    return [f"{prefix}-{batch}-{n}" for n in range(1, count + 1)]


def parse_sse(body: str) -> list[dict[str, Any]]:
    """The events of an SSE body: ``{"event", "id", "data"}`` (data parsed as JSON)."""
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {"event": "message", "id": None}
        data = []
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            elif name in ("event", "id"):
                fields[name] = value
        if data:
            fields["data"] = json.loads("\n".join(data))
            events.append(fields)
    return events


async def start_job(client: httpx.AsyncClient, order_ids: list[str]) -> dict[str, str]:
    response = await client.post("/jobs/process-orders", json={"order_ids": order_ids})
    assert response.status_code == 202, response.text
    return response.json()


async def stream(client: httpx.AsyncClient, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    response = await client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.text)


def connections(job_id: str) -> list[dict[str, Any]]:
    return [c for c in demo.app.state.connections if c["job_id"] == job_id]


async def settled(
    client: httpx.AsyncClient, item_ids: list[str], *, within: float = PATIENCE
) -> dict[str, Any]:
    """The stats once every item's notification was consumed and the outbox is empty."""

    async def check() -> dict[str, Any]:  # empty (falsy) until then
        stats = (await client.get("/api/stats")).json()
        notes = stats["notifications"]
        if stats["outbox"]["pending"] or any(
            notes.get(i, {}).get("consumed", 0) < 1 for i in item_ids
        ):
            return {}
        return stats

    return await wait_until_async(
        check, f"the notifications of {item_ids} to be consumed", within=within
    )


def outbox_rows(path: Path) -> dict[str, list[str]]:
    """Item id -> the statuses of its notification rows in an orders database file."""
    found: dict[str, list[str]] = {}
    with closing(sqlite3.connect(path)) as db:
        for payload, status in db.execute("SELECT payload, event_status FROM outbox"):
            found.setdefault(domain.notified_item(json.loads(payload)) or "?", []).append(status)
    return found


def shipments(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [order for (order,) in db.execute("SELECT order_id FROM shipments")]


async def run_job(client: httpx.AsyncClient, order_ids: list[str]) -> list[dict[str, Any]]:
    started = await start_job(client, order_ids)
    return await stream(client, started["events_url"])


# -- the notifications: outbox -> relay -> broker -> consumer (inbox) ------------------------


async def test_orders_go_through_while_the_broker_is_down_and_nothing_is_lost(
    client: httpx.AsyncClient,
) -> None:
    orders = ids("ORD", 4)
    deferred = demo.notifications.stats()["relay"].get("deferred", 0)
    demo.broker.fail_with = ConnectionError("the broker is away")
    try:
        events = await run_job(client, orders)
        assert events[-1]["event"] == "complete"  # the outbox decouples the job from the broker

        async def waiting() -> dict[str, Any]:  # empty (falsy) until then
            seen = (await client.get("/api/stats")).json()
            tried = seen["relay"].get("deferred", 0) >= deferred + len(orders)
            return seen if tried and seen["outbox"]["pending"] >= len(orders) else {}

        stats = await wait_until_async(waiting, "the relay to put the rows back (broker away)")
        for order in orders:
            assert stats["notifications"][order] == {"written": 1, "published": 0, "consumed": 0}
        assert stats["outbox"]["given_up"] == 0  # an outage uses up no attempt
    finally:
        demo.broker.fail_with = None
    demo.notifications.wake()
    stats = await settled(client, orders)
    for order in orders:
        assert stats["notifications"][order] == ONCE
    assert stats["outbox"] == {
        "pending": 0,
        "retrying": 0,
        "oldest_pending_age": None,
        "given_up": 0,
    }
    rows = outbox_rows(demo.storage.orders.path)
    assert [rows[order] for order in orders] == [["PRODUCED"]] * len(orders)


async def test_a_consumer_failure_is_retried_and_a_redelivery_runs_nothing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = ids("ORD", 3)
    failures: list[str] = []
    handle = domain.NotifyCustomer.handle

    async def flaky(self: domain.NotifyCustomer, event: domain.OrderShippedNotification) -> None:
        order = event.payload.order_id
        if order == orders[1] and not failures:
            failures.append(order)
            raise ConnectionError("the mail server is away")
        await handle(self, event)

    monkeypatch.setattr(domain.NotifyCustomer, "handle", flaky)
    inbox_before = demo.notifications.stats()["inbox"]
    await run_job(client, orders)
    stats = await settled(client, orders)
    assert failures == [orders[1]]
    for order in orders:
        assert stats["notifications"][order] == ONCE

    # the broker delivers one notification again (as after a lost ack): the inbox skips it
    again = next(m for m in demo.broker.published() if domain.notified_item(m.payload) == orders[0])
    await demo.broker.send_message(again)
    await wait_until_async(
        lambda: (
            demo.notifications.stats()["inbox"]["duplicates"] > inbox_before.get("duplicates", 0)
        ),
        "the inbox to skip the redelivered notification",
    )
    stats = (await client.get("/api/stats")).json()
    assert stats["notifications"][orders[0]] == ONCE
    assert stats["inbox"]["failed"] == inbox_before.get("failed", 0) + 1


async def test_notifications_written_while_the_relay_is_stopped_leave_when_it_starts() -> None:
    orders = ids("ORD", 3)
    transport = httpx.ASGITransport(app=demo.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        assert not demo.notifications.running
        await run_job(client, orders)
        stats = (await client.get("/api/stats")).json()
        assert stats["outbox"]["pending"] >= len(orders)
        for order in orders:
            assert stats["notifications"][order] == {"written": 1, "published": 0, "consumed": 0}
        async with demo.notifications:  # the server starts again
            stats = await settled(client, orders)
    for order in orders:
        assert stats["notifications"][order] == ONCE
    assert stats["outbox"]["pending"] == 0


def test_a_broker_url_of_no_known_scheme_says_which_it_takes() -> None:
    with pytest.raises(ValueError, match=r"DEMO_BROKER='ftp://x'.*amqp://.*leave it unset"):
        pipeline.broker_for_url("ftp://x")
    assert pipeline.describe(None) == "in-memory"
    assert pipeline.describe("amqp://guest:secret@rabbit:5672/") == "amqp://guest:***@rabbit:5672/"
    assert pipeline.describe("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_a_demo_db_that_is_a_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    taken = tmp_path / "demo.sqlite3"
    taken.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"DEMO_DB=.*is a file; give a directory"):
        _ = store.Storage(taken).orders.engine


# -- POST /process-files: the endpoint of the "FastAPI Integration" page ---------------------


async def test_process_files_sends_the_seed_frames(client: httpx.AsyncClient) -> None:
    files = ids("file", 3)
    response = await client.post("/process-files", json={"file_ids": files})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames.pop() == ""
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames), frames
    assert [json.loads(frame.removeprefix("data: ")) for frame in frames] == [
        {"type": "start", "message": "Processing..."},
        *(
            {
                "type": "progress",
                "data": {"file_id": f, "status": "completed", "position": n, "total": 3},
            }
            for n, f in enumerate(files, start=1)
        ),
        {"type": "complete"},
    ]
    for file_id in files:
        assert demo.ledger.files[file_id] == 1
        assert demo.ledger.handled[file_id] == ["FileScanned"]
    stats = await settled(client, files)
    assert [stats["notifications"][f] for f in files] == [ONCE] * 3


def test_process_files_is_the_seed_endpoint_as_written() -> None:
    if not SEED.is_file():
        pytest.skip("../shared/seeds not found: the seed pages live beside the repository")
    block = re.findall(r"^```python[ \t]*\n(.*?)^```", SEED.read_text(), re.M | re.S)[0]
    seed = block[block.index("def streaming_mediator_factory") :]
    app_source = (ROOT / "examples" / "demo_app" / "app.py").read_text()

    def lines(text: str) -> list[str]:
        return [re.sub(r"\s+# noqa: .*$", "", line).rstrip() for line in text.splitlines()]

    seed_lines = [line for line in lines(seed) if line]
    app_lines = [line for line in lines(app_source) if line]
    start = app_lines.index(seed_lines[0])
    assert app_lines[start : start + len(seed_lines)] == seed_lines


@pytest.mark.parametrize("body", [{}, {"file_ids": "a"}, {"file_ids": [1]}])
async def test_process_files_rejects_an_invalid_body(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    before = dict(demo.ledger.files)
    response = await client.post("/process-files", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert dict(demo.ledger.files) == before


# -- jobs: POST starts, GET streams and resumes ---------------------------------------------


async def test_a_job_streams_start_items_and_complete(client: httpx.AsyncClient) -> None:
    orders = ids("ORD", 3)
    started = await start_job(client, orders)
    assert started["events_url"] == f"/jobs/{started['job_id']}/events"
    assert len(started["job_id"]) >= 20

    events = await stream(client, started["events_url"])

    assert events[0] == {
        "event": "start",
        "id": None,
        "data": {"type": "start", "message": "Processing..."},
    }
    assert events[1:-1] == [
        {
            "event": "progress",
            "id": str(n),
            "data": {
                "order_id": order,
                "position": n,
                "total": 3,
                "events": ["OrderShipped", "InvoiceIssued"],
                "notifications": ["order_shipped"],
            },
        }
        for n, order in enumerate(orders, start=1)
    ]
    assert events[-1] == {"event": "complete", "id": "4", "data": {"type": "complete", "items": 3}}

    stats = await settled(client, orders)
    for order in orders:
        assert stats["processed"][order] == 1
        assert sorted(stats["handled"][order]) == ["InvoiceIssued", "OrderShipped"]
        assert stats["notifications"][order] == ONCE
    assert stats["outbox"]["pending"] == 0
    assert stats["broker"] == "in-memory"
    assert stats["relay_running"] is True
    # the database says the same: one row per order, PRODUCED; one shipment per order
    rows = outbox_rows(demo.storage.orders.path)
    assert [rows[order] for order in orders] == [["PRODUCED"]] * 3
    assert [shipments(demo.storage.orders.path).count(order) for order in orders] == [1, 1, 1]
    assert [
        (c["last_event_id"], c["last"], c["drop_after"]) for c in connections(started["job_id"])
    ] == [(None, None, None)]


async def test_a_job_resumes_after_the_header_or_the_query(client: httpx.AsyncClient) -> None:
    orders = ids("ORD", 4)
    started = await start_job(client, orders)
    url = started["events_url"]
    everything = await stream(client, url)

    after_two = await stream(client, url, params={"last": "2"})
    assert after_two == everything[3:]  # no start frame, items 3 and 4, complete
    after_three = await stream(client, url, headers={"Last-Event-ID": "3"}, params={"last": "1"})
    assert after_three == everything[4:]  # the header wins over the query

    assert [(c["last_event_id"], c["last"]) for c in connections(started["job_id"])] == [
        (None, None),
        (None, "2"),
        ("3", "1"),
    ]
    assert all(demo.ledger.processed[order] == 1 for order in orders)  # never re-run


async def test_drop_after_ends_the_first_connection_early(client: httpx.AsyncClient) -> None:
    orders = ids("ORD", 5)
    started = await start_job(client, orders)
    url = started["events_url"]

    dropped = await stream(client, url, params={"drop_after": "2"})
    assert [(e["event"], e["id"]) for e in dropped] == [
        ("start", None),
        ("progress", "1"),
        ("progress", "2"),
    ]
    # what a browser does next: the same URL, with the last id it saw as Last-Event-ID
    rest = await stream(client, url, params={"drop_after": "2"}, headers={"Last-Event-ID": "2"})
    assert [(e["event"], e["id"]) for e in rest] == [
        ("progress", "3"),
        ("progress", "4"),
        ("progress", "5"),
        ("complete", "6"),
    ]
    assert [e["data"]["order_id"] for e in dropped[1:] + rest[:-1]] == orders
    assert all(demo.ledger.processed[order] == 1 for order in orders)


async def test_a_failing_job_ends_with_a_safe_error_frame(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cqrs")
    orders = [*ids("ORD", 2), "REJECT-" + uuid.uuid4().hex[:8]]
    started = await start_job(client, orders)
    events = await stream(client, started["events_url"])
    assert [(e["event"], e["id"]) for e in events] == [
        ("start", None),
        ("progress", "1"),
        ("progress", "2"),
        ("error", "3"),
    ]
    # OrderRejected is one of the app's safe_errors: the client sees which order and why
    assert events[-1]["data"] == {
        "type": "error",
        "reason": "handler_failed",
        "message": f"Order {orders[2]} was rejected: the warehouse has no stock for it.",
        "error": "OrderRejected",
    }
    # an outcome the app chose to show, not a fault: one INFO line, no ERROR, no traceback
    logged = [r for r in caplog.records if r.name == "cqrs" and r.levelno >= logging.INFO]
    assert [(r.levelno, r.exc_info) for r in logged] == [(logging.INFO, None)]
    assert orders[2] in logged[0].getMessage()
    assert [demo.ledger.processed[order] for order in orders] == [1, 1, 0]
    # the rejected order's shipment and notification were rolled back together
    stats = await settled(client, orders[:2])
    assert [stats["notifications"][order] for order in orders[:2]] == [ONCE, ONCE]
    assert orders[2] not in stats["notifications"]
    assert orders[2] not in outbox_rows(demo.storage.orders.path)
    assert orders[2] not in shipments(demo.storage.orders.path)


async def test_an_error_the_app_did_not_mark_safe_stays_generic(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(order_id: str, reason: str) -> Exception:
        return RuntimeError(f"db password hunter2 while refusing {order_id}: {reason}")

    monkeypatch.setattr(domain, "OrderRejected", broken)
    started = await start_job(client, ["REJECT-" + uuid.uuid4().hex[:8]])
    events = await stream(client, started["events_url"])
    assert events[-1]["data"] == {
        "type": "error",
        "reason": "handler_failed",
        "message": "The stream failed on the server.",
    }
    assert "hunter2" not in json.dumps(events)


async def test_an_unknown_job_kind_is_a_404_naming_the_kinds(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs/process-invoices", json={"order_ids": ["A"]})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "'process-invoices'" in detail
    assert "process-orders" in detail
    # DELETE on the same path shape still reaches the cancel route
    gone = await client.delete("/jobs/no-such-job")
    assert gone.status_code == 404
    assert "no-such-job" in gone.json()["detail"]
    assert demo.jobs.running == 0


async def test_a_running_job_can_be_cancelled_and_its_stream_says_so(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo.settings, "item_delay", 60.0)  # the job waits in its first item
    orders = ids("ORD", 2)
    started = await start_job(client, orders)
    cancelled = await client.delete(f"/jobs/{started['job_id']}")
    assert cancelled.status_code == 204
    events = await stream(client, started["events_url"])
    assert [e["event"] for e in events] == ["start", "error"]
    assert events[-1]["data"]["reason"] == "cancelled"
    assert [demo.ledger.processed[order] for order in orders] == [0, 0]
    assert demo.jobs.running == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"order_ids": []}, {"order_ids": "ORD-1"}, {"order_ids": [""]}, {"order_ids": [1]}],
)
async def test_a_job_with_an_invalid_body_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    running = demo.jobs.running
    response = await client.post("/jobs/process-orders", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert demo.jobs.running == running


async def test_an_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs/no-such-job/events")
    assert response.status_code == 404
    assert "no-such-job" in response.json()["detail"]


async def test_a_bad_last_event_id_is_400(client: httpx.AsyncClient) -> None:
    started = await start_job(client, ids("ORD", 1))
    response = await client.get(started["events_url"], params={"last": "seven"})
    assert response.status_code == 400
    await stream(client, started["events_url"])  # let the job finish within this test


# -- the page, the stats, running it ---------------------------------------------------------


async def test_the_page_follows_jobs_with_event_source(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "new EventSource(" in page
    assert "/jobs/process-orders" in page
    for event in ("progress", "complete", "error"):
        assert f'addEventListener("{event}"' in page
    assert "sessionStorage" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resources"


async def test_stats_report_the_delay_and_the_running_jobs(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/api/stats")).json()
    assert stats["item_delay"] == 0.0
    assert stats["jobs_running"] == 0
    assert set(stats) >= {"processed", "files", "handled", "notifications", "connections"}
    assert set(stats) >= {"outbox", "broker", "relay", "consumers", "inbox"}
    assert set(stats["outbox"]) == {"pending", "retrying", "oldest_pending_age", "given_up"}


@pytest.mark.parametrize(
    "command",
    [["-m", "examples.demo_app"], ["examples/demo_app/app.py"]],
    ids=["module", "file"],
)
def test_the_app_runs_as_a_module_and_as_a_file(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", *command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout


# -- DEMO_BROKER: the same path through RabbitMQ ----------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """Starts the demo app in a uvicorn process with extra environment; yields the starter."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        command = [sys.executable, "-W", "error", "-m", "uvicorn", "examples.demo_app.app:app"]
        command += ["--fd", str(sock.fileno()), "--log-level", "info"]
        with sock, log.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env},
                pass_fds=[sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            return process, f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=PATIENCE)


async def serve_a_batch(
    served: Any, env: dict[str, str], log: Path, orders: list[str]
) -> tuple[dict[str, Any], int, str]:
    """Serve the app, run a batch of ``orders`` and a rejected order, wait until their
    notifications were consumed, then stop the server with SIGTERM. Returns the last stats,
    the exit status and the server's log."""
    process, url = served(env, log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the demo server exited:\n{log.read_text()}")
        return httpx.get(f"{url}/api/stats", timeout=10).status_code == 200

    await asyncio.to_thread(
        wait_until, answers, f"the demo app at {url}", retry_on=(httpx.HTTPError,)
    )
    async with httpx.AsyncClient(base_url=url, timeout=PATIENCE) as http:
        events = await run_job(http, [*orders, "REJECT-" + uuid.uuid4().hex[:8]])
        assert [e["event"] for e in events][-2:] == ["progress", "error"]
        stats = await settled(http, orders)
    process.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(process.wait, PATIENCE)
    text = await asyncio.to_thread(log.read_text)
    assert [stats["notifications"][order] for order in orders] == [ONCE] * len(orders)
    assert len(stats["notifications"]) == len(orders)  # the rejected one was never written
    assert stats["outbox"]["pending"] == 0
    assert stats["consumers"]["acked"] == len(orders)
    assert stats["inbox"] == {"handled": len(orders), "duplicates": 0, "failed": 0}
    assert status == -signal.SIGTERM, text  # uvicorn re-raises a handled SIGTERM
    assert "Application shutdown complete" in text
    assert "Traceback" not in text
    return stats, status, text


@pytest.mark.timeout(LONG_TEST_TIMEOUT)
async def test_the_served_demo_runs_the_whole_path_and_removes_its_temporary_files(
    tmp_path: Path, served: Any
) -> None:
    orders = ids("ORD", 5)
    env = {"DEMO_ITEM_DELAY": "0.05"}
    stats, _, _ = await serve_a_batch(served, env, tmp_path / "uvicorn.log", orders)
    assert stats["broker"] == "in-memory"
    database = Path(stats["database"])
    assert database.name.startswith("cqrs-demo-")
    assert not await asyncio.to_thread(database.exists)  # removed when the server stopped


def test_a_demo_broker_that_does_not_answer_stops_the_start_with_the_reason(
    tmp_path: Path, served: Any
) -> None:
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    url = f"amqp://guest:secret@127.0.0.1:{free_port()}/"  # nothing listens there
    log = tmp_path / "uvicorn.log"
    process, _ = served({"DEMO_BROKER": url}, log)
    assert process.wait(timeout=PATIENCE) != 0
    text = log.read_text()
    assert "Application startup failed" in text
    assert "DEMO_BROKER=amqp://guest:***@127.0.0.1:" in text
    assert "could not connect and subscribe" in text
    assert "secret" not in text


@pytest.mark.rabbitmq
@pytest.mark.timeout(LONG_TEST_TIMEOUT)
async def test_demo_broker_sends_the_notifications_through_rabbitmq(
    tmp_path: Path, served: Any
) -> None:
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    from tests.integration.brokers.conftest import (
        NEEDS_RABBIT,
        RABBIT_URL,
        delete_queues,
        rabbit_reachable,
    )

    if not rabbit_reachable():
        pytest.skip(NEEDS_RABBIT)
    prefix = f"demo-test-{uuid.uuid4().hex[:8]}-"
    data = tmp_path / "data"
    env = {
        "DEMO_BROKER": RABBIT_URL,
        "DEMO_DB": str(data),
        "DEMO_TOPIC_PREFIX": prefix,
        "DEMO_ITEM_DELAY": "0.05",
    }
    orders = ids("ORD", 6)
    try:
        stats, _, _ = await serve_a_batch(served, env, tmp_path / "uvicorn.log", orders)
    finally:
        await delete_queues([prefix + "orders", prefix + "files"])
    assert stats["broker"] == RABBIT_URL.replace(":guest@", ":***@")
    assert stats["database"] == str(data)
    # DEMO_DB kept the files: every row PRODUCED, one inbox record per notification
    assert outbox_rows(data / "orders.sqlite3") == {order: ["PRODUCED"] for order in orders}
    with closing(sqlite3.connect(data / "notifications.sqlite3")) as db:
        assert db.execute("SELECT count(*) FROM inbox").fetchone() == (len(orders),)
