"""The demo web app (examples/demo_app) at the ASGI level: no server, no browser.

The browser side is in tests/browser/test_demo_browser.py.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.demo_app import app as demo
from examples.demo_app import domain

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seeds" / "002_a6a20ec0fead2227.txt"


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.settings, "item_delay", 0.0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=demo.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
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
    stats = (await client.get("/api/stats")).json()
    assert all(stats["notifications"][f] == 1 for f in files)


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

    stats = (await client.get("/api/stats")).json()
    for order in orders:
        assert stats["processed"][order] == 1
        assert sorted(stats["handled"][order]) == ["InvoiceIssued", "OrderShipped"]
        assert stats["notifications"][order] == 1
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
