"""Photo uploads over tus 1.0 (core, creation, checksum), and who may download them."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
from PIL import Image

from server import auth
from server.db import open_database
from sync import uploads
from tests.conftest import PASSWORD, api_login
from tests.live import running_server
from tests.sync_helpers import jpeg, new_id, problem_args, visit_args

JPEG_HEADER = b"\xff\xd8\xff"






@pytest.fixture
def photos(photos_folder, world) -> Path:
    return photos_folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(text: str | bytes) -> str:
    return base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()


def noisy_jpeg(width: int, height: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int, colour: bool = False) -> bytes:
    """A PNG of ``width`` × ``height`` black pixels: tiny on disk, huge decoded.

    Written row by row, so the test never holds the decoded image: 1-bit grey
    makes a few kilobytes, 8-bit RGB (13076 × 13000: half a gigabyte decoded) a
    few hundred.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    depth, colour_type, row_bytes = (8, 2, width * 3) if colour else (1, 0, (width + 7) // 8)
    row = b"\0" * (1 + row_bytes)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


class Tus:
    """One user's tus conversation with the app."""

    def __init__(self, client, username: str):
        self.client = client
        self.username = username
        self.token = api_login(client, username)

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0", **extra}

    def create(self, length: int, sha: str | None = None, **headers):
        metadata = [f"filetype {b64('image/jpeg')}"]
        if sha is not None:
            metadata.append(f"sha256 {b64(sha)}")
        return self.client.post("/api/uploads", headers=self.headers(**{
            "Upload-Length": str(length), "Upload-Metadata": ",".join(metadata), **headers}))

    def start(self, data: bytes, sha: str | None = "auto") -> str:
        response = self.create(len(data), sha256(data) if sha == "auto" else sha)
        assert response.status_code == 201, response.text
        return response.headers["location"]

    def offset(self, url: str) -> int:
        response = self.client.head(url, headers=self.headers())
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        return int(response.headers["upload-offset"])

    def patch(self, url: str, offset: int, chunk: bytes, checksum: str | None = None,
              content_type: str = "application/offset+octet-stream", **headers):
        extra = {"Upload-Offset": str(offset), "Content-Type": content_type, **headers}
        if checksum is not None:
            extra["Upload-Checksum"] = checksum
        return self.client.patch(url, content=chunk, headers=self.headers(**extra))

    def upload(self, data: bytes, sha: str | None = "auto") -> str:
        url = self.start(data, sha)
        response = self.patch(url, 0, data)
        assert response.status_code == 204, response.text
        return sha256(data)

    def photo(self, sha: str, thumb: bool = False):
        suffix = "/thumb" if thumb else ""
        return self.client.get(f"/api/photos/{sha}{suffix}",
                               headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture
def field1(client, world):
    return Tus(client, "field1")


def sha1_header(chunk: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()


def upload_row(db, url: str) -> dict:
    return next(db.query("SELECT * FROM uploads WHERE id = ?", [url.rsplit("/", 1)[1]]))


def attachment_count(db) -> int:
    return db["attachments"].count


def stored_photos(photos: Path) -> list[Path]:
    return [p for p in photos.glob("??/*") if p.is_file()]


# The tus handshake ---------------------------------------------------------------------


def test_options_advertises_the_protocol(client):
    response = client.options("/api/uploads")
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {"creation", "checksum"}
    assert int(response.headers["tus-max-size"]) == 10 * 1024 * 1024
    assert "sha1" in response.headers["tus-checksum-algorithm"].split(",")


def test_creation_answers_a_location_and_records_the_upload(field1, db, world, photos):
    data = jpeg()
    response = field1.create(len(data), sha256(data))
    assert response.status_code == 201
    assert response.headers["tus-resumable"] == "1.0.0"
    url = response.headers["location"]
    assert url.startswith("/api/uploads/")
    row = upload_row(db, url)
    assert (row["user_id"], row["length"], row["sha256"]) == (
        world.users["field1"], len(data), sha256(data))
    assert row["completed_at"] is None
    head = field1.client.head(url, headers=field1.headers())
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == (
        "0", str(len(data)))


def test_creation_without_tus_resumable_is_412(field1, db):
    response = field1.client.post("/api/uploads", headers={
        "Authorization": f"Bearer {field1.token}", "Upload-Length": "100"})
    assert response.status_code == 412
    assert db["uploads"].count == 0


@pytest.mark.parametrize("length", [None, "0", "abc", "-5", "1.5", " 10"])
def test_creation_needs_a_positive_upload_length(field1, db, length):
    headers = field1.headers()
    if length is not None:
        headers["Upload-Length"] = length
    response = field1.client.post("/api/uploads", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_length"
    assert db["uploads"].count == 0


def test_creation_over_10_mb_is_413_with_a_json_error(field1, db):
    response = field1.create(10 * 1024 * 1024 + 1)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["message"]
    assert db["uploads"].count == 0
    assert field1.create(10 * 1024 * 1024).status_code == 201


@pytest.mark.parametrize("metadata", ["sha256 " + b64("not-a-hash"), "sha256 %%%notbase64"])
def test_creation_refuses_bad_metadata(field1, db, metadata):
    response = field1.client.post("/api/uploads", headers=field1.headers(
        **{"Upload-Length": "10", "Upload-Metadata": metadata}))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_metadata"
    assert db["uploads"].count == 0


def test_creation_needs_a_token(client, db, world):
    response = client.post("/api/uploads", headers={"Tus-Resumable": "1.0.0",
                                                    "Upload-Length": "10"})
    assert response.status_code == 401
    assert db["uploads"].count == 0


# Sending the bytes ------------------------------------------------------------------------


def test_a_patch_at_the_wrong_offset_is_409(field1, db):
    data = jpeg()
    url = field1.start(data)
    assert field1.patch(url, 0, data[:100]).status_code == 204
    response = field1.patch(url, 50, data[50:])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "offset_mismatch"
    assert field1.offset(url) == 100


def test_a_patch_with_another_content_type_is_415(field1, db):
    data = jpeg()
    url = field1.start(data)
    response = field1.patch(url, 0, data, content_type="image/jpeg")
    assert response.status_code == 415
    assert field1.offset(url) == 0
    assert attachment_count(db) == 0


def test_a_patch_without_tus_resumable_is_412(field1, db):
    data = jpeg()
    url = field1.start(data)
    response = field1.client.patch(url, content=data, headers={
        "Authorization": f"Bearer {field1.token}", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert response.status_code == 412
    assert field1.offset(url) == 0


def test_a_chunk_with_a_wrong_checksum_is_460_and_discarded(field1, db):
    data = jpeg()
    url = field1.start(data)
    assert field1.patch(url, 0, data[:200], sha1_header(data[:200])).status_code == 204
    response = field1.patch(url, 200, data[200:400], sha1_header(b"something else"))
    assert response.status_code == 460
    assert response.json()["error"]["code"] == "checksum_mismatch"
    assert field1.offset(url) == 200
    response = field1.patch(url, 200, data[200:], sha1_header(data[200:]))
    assert response.status_code == 204
    assert attachment_count(db) == 1


def test_an_unknown_checksum_algorithm_is_400(field1, db):
    data = jpeg()
    url = field1.start(data)
    response = field1.patch(url, 0, data, "crc32 AAAA")
    assert response.status_code == 400
    assert field1.offset(url) == 0


def test_more_bytes_than_announced_are_refused(field1, db):
    data = jpeg()
    url = field1.start(data)
    assert field1.patch(url, 0, data[:10]).status_code == 204
    response = field1.patch(url, 10, data[10:] + b"extra")
    assert response.status_code == 413
    assert field1.offset(url) == 10
    assert attachment_count(db) == 0


def test_an_upload_broken_at_40_percent_resumes_there(field1, db, world, photos):
    data = noisy_jpeg(300, 200)
    sha = sha256(data)
    url = field1.start(data)
    cut = len(data) * 4 // 10
    assert field1.patch(url, 0, data[:cut], sha1_header(data[:cut])).status_code == 204
    assert field1.offset(url) == cut
    assert attachment_count(db) == 0
    response = field1.patch(url, cut, data[cut:], sha1_header(data[cut:]))
    assert response.status_code == 204
    assert response.headers["upload-offset"] == str(len(data))
    assert (photos / sha[:2] / sha).read_bytes() == data
    attachment = next(db.query("SELECT * FROM attachments WHERE sha256 = ?", [sha]))
    assert (attachment["mime"], attachment["width"], attachment["height"]) == (
        "image/jpeg", 300, 200)
    assert (attachment["size"], attachment["uploaded_by"]) == (len(data), world.users["field1"])
    assert upload_row(db, url)["completed_at"] is not None
    assert not (photos / "uploads" / url.rsplit("/", 1)[1]).exists()


@contextlib.contextmanager
def locked_by_another_process(path: Path):
    """A second process holding the POSIX lock a PATCH takes on ``path``, as another
    worker's PATCH of the same upload would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+b');"
         " fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def locked_elsewhere(path: Path) -> bool:
    """Whether another process finds ``path`` locked (asked from a second process)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'rb+')\n"
         "try:\n fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "except OSError:\n sys.exit(3)", str(path)],
        timeout=30,
    )
    return probe.returncode == 3


def test_a_patch_while_another_process_appends_is_409_and_appends_nothing(field1, photos):
    data = noisy_jpeg(300, 200)
    url = field1.start(data)
    cut = len(data) // 2
    assert field1.patch(url, 0, data[:cut]).status_code == 204
    partial = photos / "uploads" / url.rsplit("/", 1)[1]
    with locked_by_another_process(partial):
        refused = field1.patch(url, cut, data[cut:])
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "busy_upload"
        assert refused.headers["tus-resumable"] == "1.0.0"
        assert partial.stat().st_size == cut
        assert field1.offset(url) == cut
    assert field1.patch(url, cut, data[cut:]).status_code == 204
    assert (photos / sha256(data)[:2] / sha256(data)).read_bytes() == data


def test_completing_an_upload_keeps_its_lock_until_the_patch_ends(field1, db, world, photos):
    """``finish`` reads the bytes through the locked file: opening the partial file again
    would drop this process's lock while the photo is checked and moved."""
    data = noisy_jpeg(60, 40)
    url = field1.start(data)
    owner = auth.load_user(db, world.users["field1"])
    upload = uploads.get_upload(db, owner, url.rsplit("/", 1)[1])
    store = uploads.PhotoStore(photos)
    with store.appending(upload.id) as received:
        received.write(data)
        received.flush()
        attachment = uploads.finish(store, upload, received)
        assert attachment["sha256"] == sha256(data)
        assert locked_elsewhere(store.photo(sha256(data)))
    assert not locked_elsewhere(store.photo(sha256(data)))


def test_a_patch_that_lost_the_race_to_a_completing_one_is_409(field1, photos, monkeypatch):
    """The other process completed the upload between this PATCH's open and its lock:
    the file it opened is no longer the upload's."""
    data = noisy_jpeg(60, 40)
    url = field1.start(data)
    partial = photos / "uploads" / url.rsplit("/", 1)[1]
    real_lockf = uploads.fcntl.lockf

    def completed_meanwhile(file, flags):
        partial.rename(partial.with_suffix(".elsewhere"))
        real_lockf(file, flags)

    monkeypatch.setattr(uploads.fcntl, "lockf", completed_meanwhile)
    refused = field1.patch(url, 0, data)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "busy_upload"


def test_a_png_is_stored_as_a_png(field1, db):
    sha = field1.upload(png())
    assert db.execute("SELECT mime, width, height FROM attachments WHERE sha256 = ?",
                      [sha]).fetchone() == ("image/png", 30, 20)


def test_a_patch_after_completion_changes_nothing(field1, db, photos):
    data = jpeg()
    url = field1.start(data)
    assert field1.patch(url, 0, data).status_code == 204
    response = field1.patch(url, len(data), b"")
    assert response.status_code == 204
    assert response.headers["upload-offset"] == str(len(data))
    assert field1.patch(url, 0, data).status_code == 409
    assert attachment_count(db) == 1
    assert list((photos / "uploads").iterdir()) == []  # no partial file left behind


def test_bytes_differing_from_the_announced_sha256_are_refused(field1, db, photos):
    data = jpeg()
    url = field1.start(data, sha=sha256(b"another photo"))
    response = field1.patch(url, 0, data)
    assert response.status_code == 460
    assert response.json()["error"]["code"] == "checksum_mismatch"
    assert attachment_count(db) == 0
    assert stored_photos(photos) == []
    assert upload_row(db, url)["completed_at"] is None
    assert field1.offset(url) == 0


@pytest.mark.parametrize("data", [
    b"hello" * 1000,
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 20,
    JPEG_HEADER + b"\xe0 not really a jpeg" * 50,
], ids=["text", "pdf", "fake jpeg header"])
def test_bytes_that_are_not_an_image_are_415_and_not_kept(field1, db, photos, data):
    url = field1.start(data)
    response = field1.patch(url, 0, data)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "not_an_image"
    assert attachment_count(db) == 0
    assert stored_photos(photos) == []
    assert not (photos / "uploads" / url.rsplit("/", 1)[1]).exists()


@pytest.mark.parametrize("width, height", [(13076, 13000), (20000, 20000)])
def test_an_image_of_too_many_pixels_is_refused_and_the_upload_ends(field1, db, photos,
                                                                      width, height):
    data = bomb_png(width, height)
    assert len(data) < 200_000
    url = field1.start(data)
    response = field1.patch(url, 0, data)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_too_large"
    assert "50 百万像素" in error["message"]
    assert attachment_count(db) == 0
    assert stored_photos(photos) == []
    assert not (photos / "uploads" / url.rsplit("/", 1)[1]).exists()
    # The upload has ended: resuming it is 410 Gone, never a 500 nor a fresh start.
    assert field1.client.head(url, headers=field1.headers()).status_code == 410
    for offset in (0, len(data)):
        again = field1.patch(url, offset, data)
        assert again.status_code == 410
        assert again.json()["error"]["code"] == "image_too_large"
    assert upload_row(db, url)["completed_at"] is None


def test_the_pixel_limit_is_judged_from_the_header_before_decoding(field1, db, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    data = bomb_png(13076, 13000)
    assert field1.patch(field1.start(data), 0, data).status_code == 413
    data = png()
    assert field1.patch(field1.start(data), 0, data).status_code == 204


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_just_within_the_limit_is_accepted(field1, db, monkeypatch):
    monkeypatch.setattr("sync.uploads.MAX_PIXELS", 600)
    assert field1.patch(field1.start(png()), 0, png()).status_code == 204  # 30 × 20
    big = bomb_png(31, 20)
    assert field1.patch(field1.start(big), 0, big).status_code == 413


def test_bytes_that_are_not_an_image_end_the_upload(field1, db):
    data = b"hello" * 1000
    url = field1.start(data)
    assert field1.patch(url, 0, data).status_code == 415
    assert field1.client.head(url, headers=field1.headers()).status_code == 410
    assert field1.patch(url, 0, data).json()["error"]["code"] == "not_an_image"


def test_a_stored_image_of_too_many_pixels_gets_no_thumbnail(field1, db, photos):
    # A photo stored before the limit was enforced: its thumbnail is refused, not decoded.
    data = bomb_png(13076, 13000)
    sha = sha256(data)
    (photos / sha[:2]).mkdir(exist_ok=True)
    (photos / sha[:2] / sha).write_bytes(data)
    user_id = db.execute("SELECT id FROM users WHERE username = 'field1'").fetchone()[0]
    db["attachments"].insert({"sha256": sha, "size": len(data), "mime": "image/png",
                              "width": 13076, "height": 13000, "uploaded_by": user_id,
                              "created_at": "2026-01-01T00:00:00+00:00"})
    db["uploads"].insert({"id": "old", "user_id": user_id, "length": len(data),
                          "sha256": sha, "filename": "", "created_at": "2026-01-01",
                          "completed_at": "2026-01-01"})
    response = field1.photo(sha, thumb=True)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"
    assert not (photos / "thumbs" / f"{sha}.jpg").exists()


def test_the_same_photo_twice_is_stored_once(client, field1, db, photos):
    data = jpeg(seed=3)
    field1.upload(data)
    Tus(client, "field2").upload(data)
    assert attachment_count(db) == 1
    assert len(stored_photos(photos)) == 1
    assert db.execute("SELECT count(*) FROM uploads WHERE completed_at IS NOT NULL"
                      ).fetchone() == (2,)


def test_another_user_cannot_see_or_continue_your_upload(client, field1, db):
    data = jpeg()
    url = field1.start(data)
    field2 = Tus(client, "field2")
    assert field2.client.head(url, headers=field2.headers()).status_code == 404
    assert field2.patch(url, 0, data).status_code == 404
    assert field1.offset(url) == 0
    assert attachment_count(db) == 0


def test_an_unknown_upload_is_404(field1):
    assert field1.client.head("/api/uploads/feedface", headers=field1.headers()
                              ).status_code == 404
    assert field1.patch("/api/uploads/feedface", 0, b"x").status_code == 404


# Downloads ------------------------------------------------------------------------------


def test_the_uploader_downloads_the_photo_and_its_thumbnail(field1):
    data = noisy_jpeg(1000, 600)
    sha = field1.upload(data)
    response = field1.photo(sha)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == data
    thumb = field1.photo(sha, thumb=True)
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "JPEG"
        assert max(image.size) <= 320
        assert image.size == (320, 192)


def test_a_thumbnail_is_turned_upright_by_the_photos_exif_orientation(field1):
    image = Image.frombytes("RGB", (400, 200), os.urandom(400 * 200 * 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # taken with the phone turned: shown rotated 90° clockwise
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    sha = field1.upload(buffer.getvalue())
    thumb = field1.photo(sha, thumb=True)
    with Image.open(io.BytesIO(thumb.content)) as shown:
        assert shown.size == (160, 320)


def test_a_photo_nobody_linked_is_only_for_its_uploader(client, field1):
    sha = field1.upload(jpeg())
    for username in ("field2", "office", "handler1"):
        assert Tus(client, username).photo(sha).status_code == 404
        assert Tus(client, username).photo(sha, thumb=True).status_code == 404


def test_announcing_a_known_hash_does_not_give_access(client, field1, db):
    data = jpeg(seed=5)
    sha = field1.upload(data)
    field2 = Tus(client, "field2")
    assert field2.create(len(data), sha).status_code == 201
    assert field2.photo(sha).status_code == 404


def test_a_photo_the_restored_database_forgot_completes_when_announced(client, field1, db):
    data = jpeg(seed=6)
    sha = field1.upload(data)
    db.execute("DELETE FROM uploads")  # as if restored from a backup older than the upload
    db.execute("DELETE FROM attachments")
    response = field1.create(len(data), sha)
    assert response.status_code == 201
    assert field1.offset(response.headers["location"]) == len(data)
    assert field1.photo(sha).content == data


def test_a_forgotten_photo_is_not_given_to_another_user(client, field1, db):
    data = jpeg(seed=6)
    sha = field1.upload(data)
    db.execute("DELETE FROM uploads")  # a restore from a backup older than the upload
    db.execute("DELETE FROM attachments")
    field2 = Tus(client, "field2")
    response = field2.create(len(data), sha)
    assert response.status_code == 201
    assert field2.offset(response.headers["location"]) == 0  # field2 must send the bytes
    assert field2.photo(sha).status_code == 404


def test_announcing_a_stored_photo_does_not_let_one_attach_it(client, field1, world):
    data = jpeg(seed=5)
    sha = field1.upload(data)
    field2 = Tus(client, "field2")
    url = field2.create(len(data), sha).headers["location"]
    response = client.post("/api/sync/push", json={
        "client_id": new_id(), "schema_version": 1,
        "mutations": [{"id": 1, "name": "visit.save", "args": visit_args(photos=[sha])}]},
        headers={"Authorization": f"Bearer {field2.token}"})
    [result] = response.json()["results"]
    assert (result["status"], result["error"]["code"]) == ("rejected", "unknown_photo")
    assert field2.photo(sha).status_code == 404
    assert field2.patch(url, 0, data).status_code == 204  # now field2 sent the bytes
    _push(client, field2.token, "visit.save", visit_args(photos=[sha]))
    assert field2.photo(sha).status_code == 200


def test_unknown_or_malformed_hashes_are_404(field1):
    assert field1.photo("ab" * 32).status_code == 404
    assert field1.photo("AB" * 32).status_code == 404
    assert field1.photo("not-a-hash").status_code == 404


def _push(client, token: str, name: str, args: dict) -> None:
    response = client.post("/api/sync/push", json={
        "client_id": new_id(), "schema_version": 1,
        "mutations": [{"id": 1, "name": name, "args": args}]},
        headers={"Authorization": f"Bearer {token}"})
    assert response.json()["results"][0]["status"] == "applied", response.text


def test_a_photo_on_a_visit_is_seen_by_whoever_may_see_the_visit(client, field1, world):
    sha = field1.upload(jpeg(seed=7))
    _push(client, field1.token, "visit.save",
          visit_args(area_id=world.areas["v1"], photos=[sha]))
    for username, status in (("office", 200), ("office_d1", 200), ("leader_d2", 404),
                             ("field2", 404), ("handler1", 404)):
        assert Tus(client, username).photo(sha).status_code == status, username


def test_a_photo_on_a_problem_note_follows_the_problem_scope(client, field1, world):
    sha = field1.upload(jpeg(seed=8))
    _push(client, field1.token, "problem.note", {
        "id": new_id(), "problem_id": world.problems["p3"], "note": "现场照片", "photos": [sha],
        "at": "2026-05-01T10:00:00+08:00"})
    for username, status in (("handler1", 200), ("office_d1", 200), ("field2", 200),
                             ("handler2", 404), ("leader_d2", 404)):
        assert Tus(client, username).photo(sha).status_code == status, username


@pytest.fixture
def problem_photos(client, world):
    """A photo on field1's problem in district d1, and one on field2's in district d2."""
    shas = {}
    for username, area, seed in (("field1", "v1", 11), ("field2", "v2", 12)):
        sender = Tus(client, username)
        sha = sender.upload(jpeg(seed=seed))
        _push(client, sender.token, "problem.report",
              problem_args(area_id=world.areas[area], photos=[sha]))
        shas[area] = sha
    return shas


def test_an_office_user_in_scope_sees_the_photo_in_the_browser(login_as, problem_photos):
    browser = login_as("office_d1")
    response = browser.get(f"/photos/{problem_photos['v1']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    thumb = browser.get(f"/photos/{problem_photos['v1']}/thumb")
    assert thumb.status_code == 200
    assert login_as("office").get(f"/photos/{problem_photos['v2']}").status_code == 200


def test_an_office_user_out_of_scope_gets_404_in_the_browser(login_as, problem_photos):
    browser = login_as("office_d1")
    assert browser.get(f"/photos/{problem_photos['v2']}").status_code == 404
    assert browser.get(f"/photos/{problem_photos['v2']}/thumb").status_code == 404


def test_the_browser_route_needs_a_session(client, problem_photos):
    response = client.get(f"/photos/{problem_photos['v1']}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


# The real tus-py client against a real server -----------------------------------------


@pytest.fixture
def live_server(db_path, world, photos_folder, tmp_path):
    with running_server(db_path, photos=photos_folder,
                        log=tmp_path / "server.log") as url:
        yield url, db_path


def _live_token(url: str) -> str:
    import json

    request = urllib.request.Request(
        f"{url}/api/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "field1", "password": PASSWORD,
                         "device_name": "tus-py"}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["token"]


@pytest.mark.slow
@pytest.mark.parametrize("upload_checksum", [False, True], ids=["plain", "sha1 checksums"])
def test_tus_py_uploads_resume_against_a_live_server(live_server, upload_checksum,
                                                     photos_folder):
    from tusclient import client as tus_client

    url, db_path = live_server
    headers = {"Authorization": f"Bearer {_live_token(url)}"}
    data = noisy_jpeg(940, 940)
    assert len(data) > 900 * 1024
    sha = sha256(data)
    tus = tus_client.TusClient(f"{url}/api/uploads", headers=headers)
    first = tus.uploader(file_stream=io.BytesIO(data), chunk_size=100 * 1024,
                         metadata={"sha256": sha}, upload_checksum=upload_checksum)
    stop_at = len(data) * 4 // 10
    first.upload(stop_at=stop_at)
    head = urllib.request.Request(first.url, method="HEAD",
                                  headers={**headers, "Tus-Resumable": "1.0.0"})
    with urllib.request.urlopen(head, timeout=10) as response:
        assert int(response.headers["Upload-Offset"]) == stop_at

    resumed = tus.uploader(file_stream=io.BytesIO(data), chunk_size=100 * 1024,
                           url=first.url, upload_checksum=upload_checksum)
    assert resumed.offset == stop_at
    resumed.upload()
    assert resumed.offset == len(data)

    assert (photos_folder / sha[:2] / sha).read_bytes() == data
    db = open_database(db_path)
    try:
        assert db.execute("SELECT mime, width, height FROM attachments WHERE sha256 = ?",
                          [sha]).fetchone() == ("image/jpeg", 940, 940)
    finally:
        db.close()
    download = urllib.request.Request(f"{url}/api/photos/{sha}", headers=headers)
    with urllib.request.urlopen(download, timeout=10) as response:
        assert response.read() == data


def _peak_rss_bytes(db_path: Path) -> int:
    """The peak resident memory (VmHWM) of the server process serving ``db_path``."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if str(db_path).encode() not in cmdline or b"serve" not in cmdline:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        kilobytes = next(line.split()[1] for line in status.splitlines()
                         if line.startswith("VmHWM:"))
        return int(kilobytes) * 1024
    raise AssertionError("no server process")


@pytest.mark.slow
def test_an_image_bomb_leaves_the_servers_memory_bounded(live_server):
    """The audit's PNG: 13076 × 13000 RGB pixels, about 500 KB on disk, half a gigabyte
    decoded (its thumbnail took a server from 1.1 to 3.0 GiB). It is refused from its
    header, its thumbnail is never made, and the server's peak memory stays put."""
    import httpx2 as httpx

    url, db_path = live_server
    token = _live_token(url)
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    data = bomb_png(13076, 13000, colour=True)
    assert 100_000 < len(data) < 1_000_000
    sha = sha256(data)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        http.get(f"/api/photos/{sha256(b'warm up')}/thumb")
        before = _peak_rss_bytes(db_path)
        created = http.post("/api/uploads", headers={
            "Upload-Length": str(len(data)), "Upload-Metadata": f"sha256 {b64(sha)}"})
        assert created.status_code == 201
        location = created.headers["location"]
        refused = http.patch(location, content=data, headers={
            "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "image_too_large"
        assert http.head(location).status_code == 410
        assert http.get(f"/api/photos/{sha}/thumb").status_code == 404
        time.sleep(0.5)
        grown = _peak_rss_bytes(db_path) - before
    assert grown < 300 * 1024 * 1024, f"peak memory grew by {grown / 2**20:.0f} MiB"
