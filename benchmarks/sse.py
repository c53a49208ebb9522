"""Rows 7-8: Server-Sent Events through a real uvicorn, and disconnect to handler ``finally``.

The app (:mod:`benchmarks.sse_app`) runs in a uvicorn subprocess on loopback: the socket is
bound here on ``127.0.0.1:0`` and handed over with ``--fd N`` (``pass_fds``); uvicorn runs
with its defaults (``asyncio`` loop and the ``h11`` protocol unless uvloop/httptools are
installed), ``--log-level warning --no-access-log``. The client is ``httpx`` (sync) in this
process. The server is always terminated at the end (terminate, wait, kill), even on error.

* **Server CPU per item**: ``K`` requests of ``N`` items each, on one keep-alive connection;
  the server's CPU time (the sum over its threads of ``/proc/<pid>/task/*/schedstat``, in ns;
  ``/proc/<pid>/stat`` utime+stime in clock ticks where schedstat is missing; ``psutil``
  without ``/proc``) before and after, divided by ``K * N``. Ours is ``/ours`` (the library
  with its default settings: ``sse_response(mediator.stream(cmd))``, heartbeat on), the
  baseline a hand-written endpoint (``/hand``: serializes each item with
  ``model_dump_json()`` and writes the same frames). Information in the note: ``/raw`` (a
  plain ``StreamingResponse`` of exactly the same bytes, precomputed, one chunk per frame)
  and ``/ours-no-beat`` (ours with ``heartbeat=None``: what the heartbeat costs per item).
  After a warmup of each, every round measures each path once, in an order that rotates
  from round to round (so no path always runs first after a pause); the reported values are
  the medians over the rounds, and the percentages the medians of the per-round ratios
  (each pairs measurements taken moments apart, which cancels the machine's slow drift).
  The wall throughput (items/s as the client reads them) is a second row.
* **Disconnect to ``finally``**: a raw socket POSTs to a stream whose handler yields one item
  and then waits in ``try/finally``; once the item's frame has arrived the client closes the
  socket. Latency = the server's ``time.monotonic()`` in the ``finally`` minus the client's
  ``time.monotonic()`` just before ``close()`` (CLOCK_MONOTONIC is system-wide on Linux).
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
"""The directory that holds the ``benchmarks`` package (uvicorn's working directory)."""
APP = "benchmarks.sse_app:app"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CPU_ROW = "SSE through uvicorn: server CPU per item"
WALL_ROW = "SSE through uvicorn: items/s (wall)"
DISCONNECT_ROW = "disconnect → handler finally"


# --- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running uvicorn subprocess serving :mod:`benchmarks.sse_app`."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, kill if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log_tail(log: Any) -> str:
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return text[-2000:] or "(no output)"


@contextlib.contextmanager
def serve(env: Mapping[str, str] | None = None) -> Generator[Server, None, None]:
    """Start uvicorn on a loopback socket bound here; always stop it on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with tempfile.TemporaryFile() as log:
        try:
            # uvicorn wraps an --fd socket as AF_UNIX, so asyncio does not set TCP_NODELAY on
            # the connections it accepts (as it does when uvicorn binds the port itself); set
            # on the listener, Linux passes it on to them. Without it, Nagle's algorithm and
            # delayed ACKs stall the end of each response for ~40 ms.
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            host, port = listener.getsockname()[:2]
            fd = listener.fileno()
            command = [sys.executable, "-m", "uvicorn", APP, "--fd", str(fd)]
            command += ["--log-level", "warning", "--no-access-log"]
            process = subprocess.Popen(
                command,
                pass_fds=(fd,),
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            listener.close()  # the child has its own copy
        server = Server(process, host, port)
        try:
            _wait_ready(server, log)
            yield server
        finally:
            with contextlib.suppress(httpx.HTTPError):
                # let waiting handlers end, so that uvicorn's graceful shutdown is quick
                httpx.post(f"{server.base_url}/release", timeout=1.0)
            _stop(process)


def _wait_ready(server: Server, log: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"uvicorn exited with status {server.process.returncode}: {_log_tail(log)}"
            )
        try:
            reply = httpx.get(f"{server.base_url}/health", timeout=1.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn not ready after {START_TIMEOUT_S:g} s: {_log_tail(log)}"
                ) from None
            time.sleep(0.05)
            continue
        if reply.json().get("pid") != server.process.pid:
            raise RuntimeError(f"another process answers on {server.base_url}: {reply.text}")
        return


# --- server CPU -------------------------------------------------------------------------


def cpu_clock(pid: int) -> tuple[str, Callable[[], int]]:
    """A reader of the CPU time of process ``pid`` in ns, and how it reads it."""
    task_dir = Path(f"/proc/{pid}/task")

    def schedstat() -> int:
        total = 0
        for task in task_dir.iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int((task / "schedstat").read_text().split()[0])
        return total

    def stat() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    with contextlib.suppress(OSError, ValueError, IndexError):
        if schedstat() > 0:
            return "/proc/<pid>/task/*/schedstat (ns)", schedstat
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat()
        return f"/proc/<pid>/stat utime+stime (1/{os.sysconf('SC_CLK_TCK')} s ticks)", stat
    import psutil  # type: ignore[import-not-found]  # only without /proc; not a dependency

    process = psutil.Process(pid)

    def ps() -> int:
        times = process.cpu_times()
        return int((times.user + times.system) * 1e9)

    return "psutil cpu_times (user+system)", ps


# --- row 7: server CPU per item ---------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    cpu_ns: int
    wall_ns: int


def _read_all(client: httpx.Client, path: str, n: int) -> int:
    with client.stream("POST", path, params={"n": n}) as reply:
        reply.raise_for_status()
        return sum(len(chunk) for chunk in reply.iter_raw())


def prime(client: httpx.Client, n: int) -> bytes:
    """Fetch ``/ours?n=N``, hand its frames to ``/raw`` and check that both send the same."""
    reply = client.post("/ours", params={"n": n})
    reply.raise_for_status()
    body = reply.content
    if body.count(b"\nevent: progress\n") != n or not body.endswith(b"\n\n"):
        raise RuntimeError(f"/ours?n={n} did not send {n} item frames: {body[:200]!r}")
    client.post("/raw/prime", params={"n": n}, content=body).raise_for_status()
    ours_headers = {k: v for k, v in reply.headers.items() if k != "date"}
    for path in ("/raw", "/hand"):
        other = client.post(path, params={"n": n})
        other.raise_for_status()
        if other.content != body:
            raise RuntimeError(f"{path} does not send the bytes of /ours")
        other_headers = {k: v for k, v in other.headers.items() if k != "date"}
        if ours_headers != other_headers:
            raise RuntimeError(f"headers differ: /ours {ours_headers}, {path} {other_headers}")
    return body


def _run(
    client: httpx.Client, clock: Callable[[], int], path: str, n: int, k: int, size: int
) -> _Sample:
    cpu = clock()
    start = time.perf_counter_ns()
    for _ in range(k):
        got = _read_all(client, path, n)
        if got != size:
            raise RuntimeError(f"{path}: read {got} bytes, expected {size}")
    wall = time.perf_counter_ns() - start
    time.sleep(0.002)  # let the server finish its bookkeeping of the last response
    return _Sample(clock() - cpu, wall)


def _paired_percent(ours: list[float], base: list[float]) -> float:
    """The median over rounds of how much ``ours`` is over ``base`` in the same round, in %."""
    return statistics.median((o - b) / b * 100 for o, b in zip(ours, base, strict=True))


def throughput_rows(server: Server, client: httpx.Client, settings: Settings) -> list[Row]:
    """Server CPU per item (target: ≤ 3 % over the hand-written endpoint) and wall items/s
    (info)."""
    n, k, rounds = settings.sse_items, settings.sse_requests, settings.sse_rounds
    clock_name, clock = cpu_clock(server.process.pid)
    body = prime(client, n)
    paths = ["/raw", "/ours", "/hand", "/ours-no-beat"]
    samples: dict[str, list[_Sample]] = {path: [] for path in paths}
    for path in paths:  # warmup
        _run(client, clock, path, n, k, len(body))
    for round_ in range(rounds):
        shift = round_ % len(paths)
        for path in paths[shift:] + paths[:shift]:
            samples[path].append(_run(client, clock, path, n, k, len(body)))
    items = n * k

    def cpu_us(path: str) -> list[float]:
        return [s.cpu_ns / items / 1000 for s in samples[path]]

    ours_cpu, raw_cpu, hand_cpu = cpu_us("/ours"), cpu_us("/raw"), cpu_us("/hand")
    no_beat_cpu = cpu_us("/ours-no-beat")
    ours_rate = [items / (s.wall_ns / 1e9) for s in samples["/ours"]]
    raw_rate = [items / (s.wall_ns / 1e9) for s in samples["/raw"]]
    ours_us, raw_us = statistics.median(ours_cpu), statistics.median(raw_cpu)
    hand_us, no_beat_us = statistics.median(hand_cpu), statistics.median(no_beat_cpu)
    percent = _paired_percent(ours_cpu, raw_cpu)
    hand_percent = _paired_percent(ours_cpu, hand_cpu)
    beat_percent = _paired_percent(ours_cpu, no_beat_cpu)
    shape = f"{k} requests x {n} items, {rounds} rounds"
    details: dict[str, Any] = {
        "items_per_request": n,
        "requests_per_round": k,
        "rounds": rounds,
        "body_bytes": len(body),
        "cpu_clock": clock_name,
        "overhead_percent": percent,
        "ours_cpu_samples_us": ours_cpu,
        "baseline_cpu_samples_us": raw_cpu,
        "hand_written_cpu_us": hand_us,
        "hand_written_cpu_samples_us": hand_cpu,
        "overhead_percent_over_hand_written": hand_percent,
        "no_heartbeat_cpu_us": no_beat_us,
        "no_heartbeat_cpu_samples_us": no_beat_cpu,
        "heartbeat_percent": beat_percent,
        "ours_items_per_s_samples": ours_rate,
        "baseline_items_per_s_samples": raw_rate,
    }
    return [
        Row(
            name=CPU_ROW,
            unit="µs",
            ours=ours_us,
            baseline=hand_us,
            target=Target("percent", 3.0),
            note=(
                f"baseline: a hand-written endpoint serializing each item (model_dump_json) and "
                f"writing the same frames, ours (default settings, heartbeat on) "
                f"{hand_percent:+.1f} % over it (median of per-round ratios); {shape}; "
                f"info: raw precomputed bytes {raw_us:.3f} µs, ours {percent:+.1f} % over "
                f"them; heartbeat=None {no_beat_us:.3f} µs, the heartbeat's bookkeeping "
                f"{beat_percent:+.1f} %"
            ),
            details=details,
        ),
        Row(
            name=WALL_ROW,
            unit="items/s",
            ours=statistics.median(ours_rate),
            baseline=statistics.median(raw_rate),
            note="as read by the httpx client in this process (client and server share the CPUs)",
        ),
    ]


# --- row 8: disconnect to the handler's finally -----------------------------------------


def _disconnect_once(
    server: Server, client: httpx.Client, target: str, wait_s: float
) -> float | None:
    """ms from the client's close to the handler's ``finally``; None if not within wait_s."""
    token = uuid.uuid4().hex
    sep = "&" if "?" in target else "?"
    request = (
        f"POST {target}{sep}token={token} HTTP/1.1\r\nHost: {server.host}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    sock = socket.create_connection((server.host, server.port), timeout=5.0)
    try:
        sock.sendall(request)
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"{target}: connection closed before the first item")
            received += data
            at = received.find(b"event: progress\n")
            if at >= 0 and received.find(b"\n\n", at) >= 0:
                break
        closed = time.monotonic()
    finally:
        sock.close()
    deadline = closed + wait_s
    time.sleep(0.005)  # first let the server notice undisturbed by the polls
    while True:
        reply = client.get(f"/finally/{token}")
        reply.raise_for_status()
        ran = reply.json()["t"]
        if ran is not None:
            return (ran - closed) * 1000
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def _median_or_bound(samples: list[float | None], wait_ms: float) -> tuple[float, bool]:
    """The median, or ``(wait_ms, True)`` when a sample did not finish (a lower bound)."""
    if any(sample is None for sample in samples):
        return wait_ms, True
    return statistics.median(s for s in samples if s is not None), False


def disconnect_row(server: Server, client: httpx.Client, settings: Settings) -> Row:
    """Close to ``finally`` for ours and a raw ``StreamingResponse``; target: ours < 5 ms.

    Ours and the baseline alternate after a warmup of each; a variant whose ``finally`` did
    not run within ``disconnect_wait_s`` is not sampled again and reported as ``> wait``.
    Also measured once (in the details and the note): the baseline served as under ASGI
    spec 2.4, where Starlette's ``StreamingResponse`` no longer listens for the disconnect.
    """
    wait_s, runs = settings.disconnect_wait_s, settings.disconnect_runs
    wait_ms = wait_s * 1000
    # warmups; a variant that did not finish keeps its None and is not sampled again
    ours = [_disconnect_once(server, client, "/ours-hang", wait_s)]
    raw = [_disconnect_once(server, client, "/raw-hang", wait_s)]
    ours = [] if ours[0] is not None else ours
    raw = [] if raw[0] is not None else raw
    for _ in range(runs):
        if None not in raw:
            raw.append(_disconnect_once(server, client, "/raw-hang", wait_s))
        if None not in ours:
            ours.append(_disconnect_once(server, client, "/ours-hang", wait_s))
    spec24 = _disconnect_once(server, client, "/raw-hang?spec=2.4", wait_s)
    ours_ms, ours_bound = _median_or_bound(ours, wait_ms)
    raw_ms, raw_bound = _median_or_bound(raw, wait_ms)
    spec = server_spec_version(client)
    spec24_text = (
        f"> {wait_ms:g} ms (noticed only at its next send)"
        if spec24 is None
        else f"{spec24:.3f} ms"
    )
    note = (
        f"median of {runs}; baseline: StreamingResponse under this uvicorn's ASGI spec "
        f"{spec}; served as under spec 2.4 its finally: {spec24_text}"
    )
    return Row(
        name=DISCONNECT_ROW,
        unit="ms",
        ours=ours_ms,
        baseline=raw_ms,
        target=Target("ours", 5.0, strict=True),
        note=note,
        lower_bounds=tuple(
            name for name, bound in (("ours", ours_bound), ("baseline", raw_bound)) if bound
        ),
        details={
            "runs": runs,
            "wait_ms": wait_ms,
            "asgi_spec_version": spec,
            "ours_samples_ms": ours,
            "baseline_samples_ms": raw,
            "baseline_spec_2_4_ms": spec24,
        },
    )


def server_spec_version(client: httpx.Client) -> str:
    """The ASGI ``spec_version`` the server puts in its scopes."""
    reply = client.get("/spec")
    reply.raise_for_status()
    return str(reply.json()["spec_version"])


# --- the rows ---------------------------------------------------------------------------


def sse_rows(settings: Settings) -> list[Row]:
    """Rows 7-8 against one uvicorn subprocess; a part that fails becomes ERROR row(s)."""
    try:
        with serve() as server, httpx.Client(base_url=server.base_url, timeout=30.0) as client:
            rows: list[Row] = []
            try:
                rows += throughput_rows(server, client, settings)
            except Exception as exc:  # reported as an ERROR row
                rows.append(failed_row(CPU_ROW, exc))
            try:
                rows.append(disconnect_row(server, client, settings))
            except Exception as exc:  # reported as an ERROR row
                rows.append(failed_row(DISCONNECT_ROW, exc))
            return rows
    except Exception as exc:  # the server did not start
        return [failed_row(CPU_ROW, exc), failed_row(DISCONNECT_ROW, exc)]


# --- profiling the server side ----------------------------------------------------------


def profile_server(path: str, settings: Settings, top: int) -> None:
    """Print a cProfile of the uvicorn process while it serves ``path`` (``/ours``, ``/raw``).

    The profiler runs inside the server (``CQRS_BENCH_SSE_PROFILE``) around ``sse_requests``
    requests of ``sse_items`` items, after a warmup.
    """
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        stats_path = str(Path(tmp) / "server.prof")
        with (
            serve({"CQRS_BENCH_SSE_PROFILE": stats_path}) as server,
            httpx.Client(base_url=server.base_url, timeout=60.0) as client,
        ):
            n, k = settings.sse_items, settings.sse_requests
            size = len(prime(client, n))
            _run(client, lambda: 0, path, n, k, size)
            client.post("/profile/start").raise_for_status()
            _run(client, lambda: 0, path, n, k, size)
            client.post("/profile/stop").raise_for_status()
        print(f"uvicorn serving {path}: {k} requests x {n} items under cProfile")
        pstats.Stats(stats_path).strip_dirs().sort_stats("tottime").print_stats(top)
