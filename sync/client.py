"""A reference sync client in plain Python (standard library only).

It does what the phone app does — an outbox of numbered mutations, push,
resumable photo uploads, pull — and is used by the tests, the benchmarks and
``fieldledger simulate-devices``. Its state is a JSON-serialisable dict, so a
test can "restart the phone" by rebuilding a client from it.

The transport is a function ``(method, path, headers, body) -> Response``;
``HttpTransport`` talks to a real server, and tests may wrap it to lose
responses or break connections.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import http.client
import json
import random
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass

SCHEMA_VERSION = 1
PAGE_FORMAT = 2
APP_VERSION = "reference-client"
PUSH_BATCH = 100
CHUNK_SIZE = 256 * 1024
# Rejections a server restored from a backup can give although the phone is
# right: a photo announced after the backup, or a note whose problem another
# phone has not sent again yet. The phone still holds the record, so it sends
# it again on later rounds (a few times) before taking the rejection as final.
RETRIED_REJECTIONS = {"unknown_photo", "problem_not_found"}
MAX_RETRIES = 10
# Answers by which the server refuses a photo for good (too many pixels, not an
# image, over 10 MB, or an upload that already ended so): sending it again
# cannot succeed, so the phone keeps it, marks it refused and stops trying.
REFUSED_UPLOAD = {410, 413, 415}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


Transport = Callable[[str, str, dict, bytes | None], Response]


class TransportError(Exception):
    """The request may or may not have reached the server; retrying is safe."""


def page_changes(body: dict) -> list[dict]:
    """The changes of a pull's answer in the compact page format (format 2), one
    dict per record as in format 1: ``{entity, id, version, data}`` or
    ``{entity, id, deleted: True}``."""
    changes = []
    for entity, page in body["records"].items():
        columns = page["columns"]
        for version, row in zip(page["versions"], page["rows"], strict=True):
            data = dict(zip(columns, row, strict=True))
            changes.append({"entity": entity, "id": str(data["id"]), "version": version,
                            "data": data})
    for entity, ids in body["deleted"].items():
        changes.extend({"entity": entity, "id": str(record_id), "deleted": True}
                       for record_id in ids)
    return changes


class SyncError(Exception):
    """The server refused in a way retrying will not fix."""

    def __init__(self, status: int, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class PhotoRefused(Exception):
    """The server refused a photo's bytes for good (see REFUSED_UPLOAD)."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.error = {"code": "refused", "message": ""}
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.error = response.json()["error"]


class HttpTransport:
    def __init__(self, base_url: str, timeout: float = 30):
        parts = urllib.parse.urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self.received = 0  # bytes of response bodies as they came over the wire

    def __call__(self, method, path, headers, body) -> Response:
        connection_class = (
            http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        )
        connection = connection_class(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body,
                               headers={"Accept-Encoding": "gzip", **headers})
            response = connection.getresponse()
            raw = response.read()
            self.received += len(raw)
            response_headers = {k.lower(): v for k, v in response.getheaders()}
            if response_headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            return Response(response.status, response_headers, raw)
        except (OSError, http.client.HTTPException) as error:
            raise TransportError(str(error)) from error
        finally:
            connection.close()


def backoff(attempt: int, cap: float = 30.0) -> float:
    """Seconds before try ``attempt + 1``: doubling from 0.2 s up to ``cap``, with jitter."""
    return min(cap, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)


def retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_state(client_id: str | None = None) -> dict:
    return {
        "client_id": client_id or str(uuid.uuid4()),
        "token": None,
        "next_mutation_id": 1,
        "outbox": [],          # mutations not yet acknowledged
        "captured": {},        # "kind:id" -> latest mutation {name, args}: what the phone holds
        "records": {},         # "entity:id" -> data pulled from the server
        "cursor": 0,
        "epoch": None,
        "rejected": [],        # {id, name, code, message}
        "photos": {},          # sha256 -> {"upload": url or None, "done": bool, "refused"?: error}
        "deferred": [],        # rejected mutations to send again (see RETRIED_REJECTIONS)
        "retries": {},         # record key -> times sent again
        "oldest_unsynced_at": None,  # when the oldest mutation still queued was captured
        "last_sync_at": None,
    }


def photos_named(args: dict) -> list[str]:
    solved = args.get("solved_on_spot") or {}
    return [*args.get("photos", []), *solved.get("photos", [])]


def record_key(name: str, args: dict) -> str:
    """The local record a mutation saves: re-saving it replaces the earlier version."""
    kind = name.split(".")[0]
    if name == "problem.edit":
        return f"problem:{args['problem_id']}"
    return f"{kind}:{args['id']}" if name != "problem.note" else f"note:{args['id']}"


class SyncClient:
    def __init__(self, transport: Transport, state: dict | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 6,
                 max_busy_attempts: int = 40):
        self.transport = transport
        self.state = state or new_state()
        self.sleep = sleep
        self.max_attempts = max_attempts  # network errors and time-outs
        self.max_busy_attempts = max_busy_attempts  # 503 answers (a busy server)
        # Photo bytes live on the phone until uploaded; kept out of the JSON state.
        self.photo_bytes: dict[str, bytes] = {}
        # How many times this client started over after a restore.
        self.restarts = 0

    # HTTP -----------------------------------------------------------------

    def _headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.state["token"]:
            headers["Authorization"] = f"Bearer {self.state['token']}"
        return headers

    def request(self, method: str, path: str, body=None, headers=None, retry=True) -> Response:
        """Send; on a network error or time-out try again after an exponential backoff with
        jitter, and on a 503 after the ``Retry-After`` the server gave, stretched by a random
        factor up to two, so that phones refused together do not come back together."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = self._headers(headers)
        if isinstance(body, dict):
            all_headers["Content-Type"] = "application/json"
        failures = busy = 0
        while True:
            try:
                response = self.transport(method, path, all_headers, data)
            except TransportError:
                failures += 1
                if not retry or failures >= self.max_attempts:
                    raise
                delay = backoff(failures - 1)
            else:
                if response.status != 503 or not retry:
                    return response
                busy += 1
                if busy >= self.max_busy_attempts:
                    return response
                delay = retry_after(response) or backoff(busy - 1)
                delay *= random.uniform(1.0, 2.0)
            self.sleep(delay)

    def login(self, username: str, password: str, device_name: str = "reference client"):
        response = self.request("POST", "/api/login", {
            "username": username, "password": password, "device_name": device_name,
        })
        if response.status != 201:
            raise SyncError(response.status, response.json())
        self.state["token"] = response.json()["token"]
        return response.json()

    # Capturing ------------------------------------------------------------

    def capture(self, name: str, args: dict) -> int:
        """Record a local change: it is held on the phone and queued for the server."""
        mutation = {"id": self.state["next_mutation_id"], "name": name, "args": args}
        self.state["next_mutation_id"] += 1
        if not self.state["outbox"]:
            self.state["oldest_unsynced_at"] = now_iso()
        self.state["outbox"].append(mutation)
        key = record_key(name, args)
        if name == "problem.edit" and key in self.state["captured"]:
            held = self.state["captured"][key]
            held["args"] = {**held["args"], **args["changes"]}
        else:
            self.state["captured"][key] = {"name": name, "args": args}
        return mutation["id"]

    def add_photo(self, data: bytes) -> str:
        """Keep a photo for upload; returns its SHA-256, by which records name it."""
        sha = hashlib.sha256(data).hexdigest()
        self.photo_bytes[sha] = data
        self.state["photos"].setdefault(sha, {"upload": None, "done": False})
        return sha

    # Push -----------------------------------------------------------------

    # Health -------------------------------------------------------------

    def health(self) -> dict:
        """What the phone reports of itself with a round's first push and pull
        (``server/device_health.py``)."""
        photos = [p for p in self.state["photos"].values()
                  if not p["done"] and "refused" not in p]
        return {
            "app_version": APP_VERSION,
            "unsynced_mutations": len(self.state["outbox"]) + len(self.state["deferred"]),
            "unsynced_photos": len(photos),
            "oldest_unsynced_at": self.state["oldest_unsynced_at"],
            "last_sync_at": self.state["last_sync_at"],
        }

    def _health_header(self) -> dict:
        return {"X-Device-Health": json.dumps(self.health())}

    # Push -----------------------------------------------------------------

    def push(self) -> list[dict]:
        """Send the outbox in batches; drop what the server acknowledged."""
        results = []
        first = True
        while self.state["outbox"]:
            batch = self.state["outbox"][:PUSH_BATCH]
            response = self.request("POST", "/api/sync/push", {
                "client_id": self.state["client_id"], "schema_version": SCHEMA_VERSION,
                "mutations": batch,
            }, self._health_header() if first else None)
            first = False
            if response.status != 200:
                raise SyncError(response.status, response.json())
            body = response.json()
            results.extend(body["results"])
            restored = self._note_epoch(body["epoch"], body["last_mutation_id"])
            if not restored and body["last_mutation_id"] < self.acknowledged():
                # The server forgot mutations it had acknowledged: restored too.
                self.resend_all(body["last_mutation_id"])
                restored = True
            if restored:
                # Everything held is queued again: send it from the top.
                self.announce_photos()
                continue
            for result in body["results"]:
                if result["status"] == "rejected":
                    mutation = next(m for m in batch if m["id"] == result["id"])
                    self._rejected(mutation, result["error"])
            self._defer_dependents(batch, body["results"])
            acknowledged = body["last_mutation_id"]
            self.state["outbox"] = [m for m in self.state["outbox"] if m["id"] > acknowledged]
            if not self.state["outbox"]:
                self.state["oldest_unsynced_at"] = None
            if body["gap"] or (self.state["outbox"] and
                               self.state["outbox"][0]["id"] != acknowledged + 1):
                # The server forgot mutations it had acknowledged (a restore
                # from backup): send everything the phone still holds again.
                self.resend_all(acknowledged)
                self.announce_photos()
        return results

    def _rejected(self, mutation: dict, error: dict) -> None:
        key = record_key(mutation["name"], mutation["args"])
        retries = self.state["retries"]
        named = [self.state["photos"][sha] for sha in photos_named(mutation["args"])
                 if sha in self.state["photos"]]
        # A photo refused before it was announced stays unknown to the server.
        hopeless = error["code"] == "unknown_photo" and any("refused" in p for p in named)
        if (error["code"] in RETRIED_REJECTIONS and retries.get(key, 0) < MAX_RETRIES
                and not hopeless):
            retries[key] = retries.get(key, 0) + 1
            self.state["deferred"].append(
                {"name": mutation["name"], "args": mutation["args"]})
            if error["code"] == "unknown_photo":
                for photo in named:
                    photo.update(upload=None, done=False)
            return
        self.state["rejected"].append({**error, "id": mutation["id"], "name": mutation["name"]})

    def _defer_dependents(self, batch: list[dict], results: list[dict]) -> None:
        """Send again, after them, the records applied while a visit or diary entry
        they name was set aside: the server dropped that link, and fills it in
        when the record comes again once what it names is there."""
        waiting = {held["args"]["id"] for held in self.state["deferred"]
                   if held["name"] in ("visit.save", "diary.save")}
        applied = {result["id"] for result in results if result["status"] == "applied"}
        for mutation in batch:
            args = mutation["args"]
            if mutation["id"] in applied and waiting & {args.get("visit_id"),
                                                        args.get("diary_id")}:
                self.state["deferred"].append({"name": mutation["name"], "args": args})

    def requeue_deferred(self) -> None:
        """Queue again the mutations set aside by ``_rejected``, once a pull brought news."""
        deferred, self.state["deferred"] = self.state["deferred"], []
        for held in deferred:
            self.capture(held["name"], held["args"])

    def acknowledged(self) -> int:
        """The highest mutation id the server has acknowledged to this phone."""
        outbox = self.state["outbox"]
        return outbox[0]["id"] - 1 if outbox else self.state["next_mutation_id"] - 1

    def resend_all(self, server_last: int) -> None:
        """Start over after a restore: re-send every record and photo, then pull from 0."""
        self.restarts += 1
        self.state["outbox"] = []
        self.state["cursor"] = 0
        self.state["records"] = {}
        self.state["next_mutation_id"] = server_last + 1
        for held in list(self.state["captured"].values()):
            mutation = {"id": self.state["next_mutation_id"], **held}
            self.state["next_mutation_id"] += 1
            self.state["outbox"].append(mutation)
        # The server may have lost the uploads too (the files stay, their records go).
        for sha, photo in self.state["photos"].items():
            if sha in self.photo_bytes and "refused" not in photo:
                photo.update(upload=None, done=False)

    def _note_epoch(self, epoch: str, server_last: int) -> bool:
        """Start over if the server's epoch changed; True if it did."""
        known = self.state["epoch"]
        self.state["epoch"] = epoch
        if known is not None and known != epoch:
            self.resend_all(server_last)
            return True
        return False

    # Photos ---------------------------------------------------------------

    def announce_photos(self) -> None:
        """tus creation for each new photo, before the records naming it are pushed."""
        for sha, photo in self.state["photos"].items():
            if (photo["upload"] is None and not photo["done"] and "refused" not in photo
                    and sha in self.photo_bytes):
                data = self.photo_bytes[sha]
                metadata = ",".join([
                    "sha256 " + base64.b64encode(sha.encode()).decode(),
                    "filetype " + base64.b64encode(b"image/jpeg").decode(),
                ])
                response = self.request("POST", "/api/uploads", b"", {
                    "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
                    "Upload-Metadata": metadata,
                })
                if response.status in REFUSED_UPLOAD:
                    self._refuse_photo(sha, PhotoRefused(response))
                    continue
                if response.status != 201:
                    raise SyncError(response.status, response.body)
                photo["upload"] = response.headers["location"]

    def _refuse_photo(self, sha: str, refusal: PhotoRefused) -> None:
        """Keep the photo (its bytes stay on the phone), stop sending it, and list
        the refusal with the rejections."""
        photo = self.state["photos"][sha]
        photo["refused"] = refusal.error
        self.state["rejected"].append({**refusal.error, "id": None, "name": "photo",
                                       "photo": sha})

    def upload_photos(self) -> None:
        for sha, photo in self.state["photos"].items():
            if (not photo["done"] and photo["upload"] and "refused" not in photo
                    and sha in self.photo_bytes):
                try:
                    uploaded = self._upload(photo["upload"], self.photo_bytes[sha])
                except PhotoRefused as refusal:
                    self._refuse_photo(sha, refusal)
                    continue
                if uploaded:
                    photo["done"] = True
                else:
                    # The server no longer knows this upload (a restore from
                    # backup): announce the photo again on the next round.
                    photo["upload"] = None

    def _upload(self, url: str, data: bytes) -> bool:
        """Send the bytes from the server's offset; False if the server forgot the
        upload. Raises PhotoRefused if the server refuses the photo for good."""
        tus = {"Tus-Resumable": "1.0.0"}
        head = self.request("HEAD", url, None, tus)
        if head.status == 404:
            return False
        if head.status in REFUSED_UPLOAD:
            # A HEAD has no body: an empty PATCH is answered with the refusal's code.
            raise PhotoRefused(self.request("PATCH", url, b"", {
                **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
            }))
        if head.status != 200:
            raise SyncError(head.status, head.body)
        offset = int(head.headers["upload-offset"])
        busy = 0
        while offset < len(data):
            chunk = data[offset:offset + CHUNK_SIZE]
            checksum = base64.b64encode(hashlib.sha1(chunk).digest()).decode()
            response = self.request("PATCH", url, chunk, {
                **tus, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": f"sha1 {checksum}",
            })
            if response.status == 409:  # we were wrong about the offset: ask again
                if response.json()["error"]["code"] == "busy_upload":
                    # Another PATCH of this upload is still running: let it end first.
                    busy += 1
                    if busy >= self.max_attempts:
                        raise SyncError(response.status, response.body)
                    self.sleep(backoff(busy - 1))
                offset = int(self.request("HEAD", url, None, tus).headers["upload-offset"])
                continue
            if response.status == 404:
                return False
            if response.status in REFUSED_UPLOAD:
                raise PhotoRefused(response)
            if response.status != 204:
                raise SyncError(response.status, response.body)
            offset = int(response.headers["upload-offset"])
        return True

    # Pull -----------------------------------------------------------------

    def pull(self, limit: int = 500) -> int:
        """Fetch changes until up to date; returns how many were applied.

        From cursor 0 (a new phone, or after a restore) the server answers a
        snapshot of the working set, then the change log from the snapshot's
        head (page format 2, docs/sync-protocol.md)."""
        applied = 0
        first = True
        while True:
            cursor = self.state["cursor"]
            query = urllib.parse.urlencode({
                "client_id": self.state["client_id"], "cursor": cursor, "limit": limit,
                "format": PAGE_FORMAT,
            })
            response = self.request("GET", f"/api/sync/pull?{query}",
                                    headers=self._health_header() if first else None)
            first = False
            if response.status != 200:
                raise SyncError(response.status, response.json())
            body = response.json()
            if self._note_epoch(body["epoch"], body["last_mutation_id"]):
                continue  # this page was read from the old timeline: start again from 0
            if body["reset"] or body["last_mutation_id"] < self.acknowledged():
                # A cursor from the future, or acknowledged mutations forgotten:
                # the server was restored (other phones may have written since).
                self.resend_all(body["last_mutation_id"])
                continue
            if cursor in (0, "0"):
                # A snapshot is the whole set: what the phone held before goes.
                self.state["records"] = {}
            for change in page_changes(body):
                key = f"{change['entity']}:{change['id']}"
                if change.get("deleted"):
                    self.state["records"].pop(key, None)
                else:
                    self.state["records"][key] = {**change["data"], "_version": change["version"]}
                applied += 1
            self.state["cursor"] = body["cursor"]
            if not body["has_more"]:
                return applied

    def sync(self) -> None:
        """One full round, in the order the phone app uses: what a restore noticed
        by the pull queued again is sent in the same round (a few passes at most)."""
        applied = 0
        for _pass in range(3):
            self.announce_photos()
            self.push()
            self.upload_photos()
            restarts = self.restarts
            applied += self.pull()
            if self.restarts == restarts and not self.state["outbox"]:
                break
        if applied or any(held["name"] != "problem.note" for held in self.state["deferred"]):
            self.requeue_deferred()
        self.state["last_sync_at"] = now_iso()

    def records(self, entity: str) -> dict[str, dict]:
        prefix = f"{entity}:"
        return {k[len(prefix):]: v for k, v in self.state["records"].items()
                if k.startswith(prefix)}
