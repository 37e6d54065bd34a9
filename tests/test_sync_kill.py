"""kill -9 the real server while it applies a large push: the batch is all there or not
at all, and the phone's retry completes it exactly once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from server.db import open_database
from sync.client import SCHEMA_VERSION
from sync.schemas import PUSH_BODY
from tests.conftest import PASSWORD, build_world
from tests.sync_helpers import new_id

# It probes SQLite's file lock and checks the file with PRAGMA integrity_check after the kill.
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

ROOT = Path(__file__).resolve().parent.parent
BATCH = PUSH_BODY["properties"]["mutations"]["maxItems"]  # the most one push may carry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``fieldledger serve`` in a subprocess on loopback."""

    def __init__(self, db_path: Path, log: Path):
        self.db_path = db_path
        self.log = log
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "--db", str(self.db_path), "serve",
                 "--port", str(self.port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/healthz", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(self.log.read_text(errors="replace")) from None
                time.sleep(0.05)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def request(self, method: str, path: str, body: dict | None = None,
                token: str | None = None, timeout: float = 60):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=json.dumps(body).encode(),
                               headers=headers(token))
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


def headers(token: str | None) -> dict:
    result = {"Content-Type": "application/json"}
    if token:
        result["Authorization"] = f"Bearer {token}"
    return result


def push_body(area_id: int) -> dict:
    return {
        "client_id": new_id(), "schema_version": SCHEMA_VERSION,
        "mutations": [
            {"id": n, "name": "problem.report", "args": {
                "id": new_id(), "area_id": area_id, "place": f"幸福社区{n}号楼",
                "description": f"楼道照明损坏，夜间无法通行（第{n}条）",
                "found_at": "2026-05-01T02:00:00+00:00",
            }}
            for n in range(1, BATCH + 1)
        ],
    }


def write_lock_held(db_path: Path) -> bool:
    """Whether some connection is inside a write transaction right now."""
    probe = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return True
        raise
    finally:
        probe.close()


def batch_state(db_path: Path, body: dict) -> tuple[int, int]:
    """(rows of this batch's problems, the client's last_mutation_id) on disk."""
    ids = [m["args"]["id"] for m in body["mutations"]]
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute(
            "SELECT count(*) FROM problems WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(ids)],
        ).fetchone()[0]
        events = db.execute(
            "SELECT count(*) FROM problem_events WHERE kind = 'reported'"
            " AND problem_id IN (SELECT value FROM json_each(?))", [json.dumps(ids)],
        ).fetchone()[0]
        assert events == rows
        last = db.execute("SELECT last_mutation_id FROM sync_clients WHERE client_id = ?",
                          [body["client_id"]]).fetchone()
    finally:
        db.close()
    return rows, last[0] if last else 0


class Push(threading.Thread):
    """Send one push and wait for an answer that, if the kill lands first, never comes."""

    def __init__(self, server: LiveServer, body: dict, token: str):
        super().__init__(daemon=True)
        self.data = json.dumps(body).encode()
        self.server, self.token = server, token
        self.sent = threading.Event()
        self.status: int | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            connection.request("POST", "/api/sync/push", body=self.data,
                               headers=headers(self.token))
            self.sent.set()
            response = connection.getresponse()
            response.read()
            self.status = response.status
        except (OSError, http.client.HTTPException) as error:
            self.error = error
        finally:
            self.sent.set()
            connection.close()


@pytest.fixture
def live(tmp_path):
    db_path = tmp_path / "fieldledger.db"
    db = open_database(db_path)
    world = build_world(db)  # password hashes use the tests' cheap argon2 parameters
    db.close()
    server = LiveServer(db_path, tmp_path / "server.log")
    server.start()
    yield server, world
    server.stop()


def login(server: LiveServer) -> str:
    status, body = server.request("POST", "/api/login", {
        "username": "field1", "password": PASSWORD, "device_name": "kill test"})
    assert status == 201, body
    return body["token"]


def kill_during_push(server: LiveServer, body: dict, token: str, when) -> float:
    """Start the push, wait until ``when(started)`` says so, kill -9; returns the delay."""
    push = Push(server, body, token)
    push.start()
    assert push.sent.wait(timeout=30)
    started = time.monotonic()
    while not when(started):
        time.sleep(0.0005)
    delay = time.monotonic() - started
    server.kill()
    push.join(timeout=30)
    assert push.status is None, "the push finished before the kill"
    return delay


def retry_completes(server: LiveServer, body: dict, token: str, before: int) -> None:
    server.start()
    status, answer = server.request("POST", "/api/sync/push", body, token)
    assert status == 200, answer
    assert answer["last_mutation_id"] == BATCH and not answer["gap"]
    statuses = {r["status"] for r in answer["results"]}
    assert statuses == ({"applied"} if before == 0 else {"skipped"}), statuses
    assert batch_state(server.db_path, body) == (BATCH, BATCH)


def test_kill_while_the_writer_holds_the_transaction(live):
    """The kill lands while the push's write transaction is open (the write lock is
    seen held for a while): nothing of the batch survives, and the retry applies it."""
    server, world = live
    token = login(server)
    body = push_body(world.areas["v1"])
    held_since: list[float] = []

    def mid_transaction(_started: float) -> bool:
        if not write_lock_held(server.db_path):
            held_since.clear()
            return False
        held_since.append(time.monotonic())
        # Held for 30 ms: the push's transaction, not a short write beside it.
        return held_since[-1] - held_since[0] > 0.03

    kill_during_push(server, body, token, mid_transaction)
    assert batch_state(server.db_path, body) == (0, 0)
    retry_completes(server, body, token, before=0)


def test_kill_at_any_moment_leaves_all_or_nothing(live):
    """Kills at several moments, from before the transaction to after the answer: each
    batch is all there or not at all, and its retry completes it."""
    server, world = live
    token = login(server)
    outcomes = []
    for delay in (0.0, 0.1, 0.3, 0.6, 1.0, 3.0):
        body = push_body(world.areas["v1"])
        push = Push(server, body, token)
        push.start()
        assert push.sent.wait(timeout=30)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and push.status is None:
            time.sleep(0.001)
        locked = write_lock_held(server.db_path)
        server.kill()
        push.join(timeout=30)
        rows, last = batch_state(server.db_path, body)
        assert (rows, last) in {(0, 0), (BATCH, BATCH)}, (delay, rows, last)
        outcomes.append((delay, locked, push.status, rows))
        retry_completes(server, body, token, before=rows)
    print("kill delay, write lock held, answer, rows:", outcomes)
    # The answer came back only for batches that were complete.
    assert all(rows == BATCH for _d, _l, status, rows in outcomes if status == 200), outcomes
