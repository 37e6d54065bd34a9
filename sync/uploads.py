"""Photos: resumable uploads (tus 1.0: core, creation, checksum) and content-addressed storage.

A photo is named by the SHA-256 of its bytes and stored once, however many
records or uploads name it. A partial upload's offset is the size of its
file on disk, so an upload broken at 40% — by the network, or by the server
being killed — resumes at 40%.

Layout under the photos folder (``<database>.photos/``)::

    uploads/<upload id>      bytes received so far
    uploads/<upload id>.refused  why a complete upload was refused (it has ended)
    ab/abcdef…               a complete photo, by SHA-256
    thumbs/abcdef….jpg       its thumbnail, made on first request
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from server import authz
from server.i18n import gettext as _
from server.timeutil import now_iso

TUS_VERSION = "1.0.0"
MAX_SIZE = 10 * 1024 * 1024
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
THUMB_SIZE = 320
# The phone sends at most 1600 px a side (2.6 MP); a camera's original is 12–50 MP.
# Decoding costs about 4 bytes a pixel whatever the file's size, so a small PNG can
# hold gigabytes: an image above this is refused from its header, never decoded.
MAX_PIXELS = 50_000_000
PIL_FORMATS = ("JPEG", "PNG", "WEBP")
# Thumbnails decode one image at a time, so memory stays bounded however many are asked for.
_THUMBNAILING = threading.Lock()


class UploadError(Exception):
    """A tus request that cannot be served; ``status`` and ``code`` say why."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Upload:
    id: str
    user_id: int
    length: int
    sha256: str | None
    completed_at: str | None


class PhotoStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "thumbs").mkdir(exist_ok=True)
        (self.root / "uploaders").mkdir(exist_ok=True)

    def partial(self, upload_id: str) -> Path:
        return self.root / "uploads" / upload_id

    @contextlib.contextmanager
    def appending(self, upload_id: str) -> Iterator[BinaryIO]:
        """The partial file, open to append and to read, while no other process appends.

        An exclusive POSIX lock (``fcntl.lockf``; NFSv4 honours it too) for as long as
        the file is open: another process's PATCH of this upload meanwhile is answered
        409 ``busy_upload``. A process drops its POSIX locks on a file when it closes
        *any* descriptor of it, so nothing else opens the partial file while this one is
        open (``finish`` reads through it), and two PATCHes within one process are kept
        apart before they get here (``app.state.upload_locks``).
        """
        path = self.partial(upload_id)
        with open(path, "a+b") as file:
            try:
                fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                raise UploadError(409, "busy_upload", "another PATCH is running") from None
            if not _same_file(path, file):
                # The PATCH that held the lock has just completed or discarded the upload.
                raise UploadError(409, "busy_upload", "another PATCH has just ended")
            yield file

    def photo(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def thumb(self, sha: str) -> Path:
        return self.root / "thumbs" / f"{sha}.jpg"

    # Who sent each photo's bytes, kept beside them: a database restored from
    # a backup forgets its uploads, and only those users may claim them again.

    def add_uploader(self, sha: str, user_id: int) -> None:
        if user_id not in self.uploaders(sha):
            with (self.root / "uploaders" / sha).open("a", encoding="ascii") as file:
                file.write(f"{user_id}\n")

    def uploaders(self, sha: str) -> set[int]:
        path = self.root / "uploaders" / sha
        return {int(line) for line in path.read_text("ascii").split()} if path.exists() else set()

    # A complete upload refused for what it holds (not an image, too many pixels)
    # has ended: sending the same bytes again cannot succeed.

    def refuse(self, upload_id: str, error: UploadError) -> None:
        self.partial(upload_id).unlink(missing_ok=True)
        marker = self.root / "uploads" / f"{upload_id}.refused"
        marker.write_text(json.dumps({"code": error.code, "message": error.message}), "utf-8")

    def refusal(self, upload_id: str) -> UploadError | None:
        """The error that ended this upload, answered 410 Gone; None if it has not ended."""
        marker = self.root / "uploads" / f"{upload_id}.refused"
        if not marker.exists():
            return None
        reason = json.loads(marker.read_text("utf-8"))
        return UploadError(410, reason["code"], reason["message"])

    def offset(self, upload: Upload) -> int:
        if upload.completed_at:
            return upload.length
        path = self.partial(upload.id)
        return path.stat().st_size if path.exists() else 0


def _same_file(path: Path, file: BinaryIO) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(file.fileno()))
    except FileNotFoundError:
        return False


def parse_metadata(header: str) -> dict[str, str]:
    metadata = {}
    for pair in filter(None, (item.strip() for item in header.split(","))):
        key, _sep, value = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise UploadError(400, "bad_metadata", f"Upload-Metadata {key}") from None
    return metadata


def create_upload(db: sqlite_utils.Database, photos: PhotoStore, user: authz.User,
                  length: int, metadata: dict[str, str]) -> str:
    sha = metadata.get("sha256", "").lower() or None
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise UploadError(400, "bad_metadata", "sha256")
    upload_id = secrets.token_hex(16)
    db["uploads"].insert({
        "id": upload_id, "user_id": user.id, "length": length, "sha256": sha,
        "filename": metadata.get("filename", "")[:200], "created_at": now_iso(),
    })
    photos.partial(upload_id).touch()
    if sha is not None and user.id in photos.uploaders(sha):
        # This user sent these bytes before, and the database forgot it (a
        # restore from backup); the phone may have kept only a thumbnail since.
        # Anyone else must send the bytes: knowing a hash proves nothing.
        _complete_from_store(db, photos, Upload(upload_id, user.id, length, sha, None))
    return upload_id


def get_upload(db: sqlite_utils.Database, user: authz.User, upload_id: str) -> Upload:
    row = db.execute(
        "SELECT id, user_id, length, sha256, completed_at FROM uploads WHERE id = ?", [upload_id]
    ).fetchone()
    if row is None or row[1] != user.id:
        raise UploadError(404, "not_found", upload_id)
    return Upload(*row)


def parse_checksum(header: str | None):
    if not header:
        return None
    algorithm, _sep, value = header.partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UploadError(400, "bad_checksum_algorithm", algorithm)
    try:
        return algorithm, base64.b64decode(value, validate=True)
    except binascii.Error:
        raise UploadError(400, "bad_checksum", header) from None


def image_type(head: bytes) -> str | None:
    """The MIME type from the file's first bytes, if it is a photo we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def open_image(path: Path | BinaryIO):
    """The image at ``path`` (or in an open file), opened lazily: only its header has been
    read.

    Raises UploadError: 413 ``image_too_large`` above MAX_PIXELS, 415
    ``not_an_image`` when it is not a JPEG, PNG or WebP Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    # Pillow's own check, for any other path that opens an image: it warns above
    # MAX_IMAGE_PIXELS and refuses twice that. Ours (below) refuses above MAX_PIXELS.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(path, formats=PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels() from None  # above twice MAX_PIXELS
    except (UnidentifiedImageError, OSError):
        raise UploadError(415, "not_an_image", _("uploads.not_decodable")) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise too_many_pixels()
    return image


def too_many_pixels() -> UploadError:
    return UploadError(413, "image_too_large", _(
        "uploads.image_too_large", max=f"{MAX_PIXELS / 1_000_000:g}"))


def image_size(path: Path) -> tuple[int | None, int | None]:
    try:
        with open_image(path) as image:
            return image.size
    except UploadError:
        return None, None


def _sha256_of(file: BinaryIO) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    file.seek(0)
    head = file.read(64)
    digest.update(head)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest(), head


def repair_forgotten_uploads(db: sqlite_utils.Database, photos: PhotoStore) -> int:
    """Complete uploads whose photo is stored but whose completion the database forgot.

    After a restore from backup, an upload that finished after the backup
    was taken is open again in the database while its bytes sit in the photo
    store under their hash. Run at start-up; returns how many were repaired.
    """
    return sum(_complete_from_store(db, photos, upload)
               for upload in forgotten_uploads(db, photos))


def forgotten_uploads(db: sqlite_utils.Database, photos: PhotoStore) -> list[Upload]:
    """Open uploads whose photo, by its announced hash and length, the store holds: what
    ``repair_forgotten_uploads`` checks and completes."""
    uploads = [Upload(*row) for row in db.execute(
        "SELECT id, user_id, length, sha256, completed_at FROM uploads"
        " WHERE completed_at IS NULL AND sha256 IS NOT NULL"
    ).fetchall()]
    return [upload for upload in uploads if _stored(photos.photo(upload.sha256), upload)]


def _stored(path: Path, upload: Upload) -> bool:
    return path.exists() and path.stat().st_size == upload.length


def _complete_from_store(db: sqlite_utils.Database, photos: PhotoStore, upload: Upload) -> bool:
    """Complete an announced upload whose verified bytes the store already holds."""
    path = photos.photo(upload.sha256)
    if not _stored(path, upload):
        return False
    with open(path, "rb") as file:
        sha, head = _sha256_of(file)
    mime = image_type(head)
    if sha != upload.sha256 or mime is None:
        return False
    width, height = image_size(path)
    record_finished(db, upload, {
        "sha256": sha, "size": upload.length, "mime": mime, "width": width,
        "height": height, "uploaded_by": upload.user_id, "created_at": now_iso(),
    })
    photos.partial(upload.id).unlink(missing_ok=True)
    return True


def finish(photos: PhotoStore, upload: Upload, received: BinaryIO) -> dict:
    """Check a complete upload and move it into place; returns the attachment row.

    ``received`` is the partial file as ``PhotoStore.appending`` holds it: read
    through it, never opened again (that would drop the lock). Raises UploadError
    when the bytes are not what was announced (they are discarded, and may be sent
    again), or are not an image we keep (the upload ends: ``PhotoStore.refuse``).
    An image is judged by its header alone, before anything is decoded.
    """
    partial = photos.partial(upload.id)
    sha, head = _sha256_of(received)
    if upload.sha256 and sha != upload.sha256:
        partial.unlink(missing_ok=True)
        raise UploadError(460, "checksum_mismatch", "sha256 of the bytes differs from metadata")
    try:
        if image_type(head) is None:
            raise UploadError(415, "not_an_image", _("uploads.not_an_image"))
        received.seek(0)
        with open_image(received) as image:
            width, height = image.size
    except UploadError as error:
        photos.refuse(upload.id, error)
        raise
    target = photos.photo(sha)
    if target.exists():
        partial.unlink()
    else:
        target.parent.mkdir(exist_ok=True)
        os.replace(partial, target)
    photos.add_uploader(sha, upload.user_id)
    return {"sha256": sha, "size": upload.length, "mime": image_type(head), "width": width,
            "height": height, "uploaded_by": upload.user_id, "created_at": now_iso()}


def record_finished(db: sqlite_utils.Database, upload: Upload, attachment: dict) -> None:
    db["attachments"].insert(attachment, ignore=True)
    db.execute(
        "UPDATE uploads SET completed_at = ?, sha256 = ? WHERE id = ?",
        [now_iso(), attachment["sha256"], upload.id],
    )


def photo_visible(db: sqlite_utils.Database, user: authz.User, sha: str) -> dict | None:
    """The attachment row if the user may see this photo: they uploaded it, or
    they may see a record that shows it."""
    rows = list(db.query("SELECT * FROM attachments WHERE sha256 = ?", [sha]))
    if not rows:
        return None
    # Only a finished upload counts: announcing a hash proves nothing about its bytes.
    if db.execute("SELECT 1 FROM uploads WHERE sha256 = ? AND user_id = ?"
                  " AND completed_at IS NOT NULL", [sha, user.id]).fetchone():
        return rows[0]
    problem_clause, problem_params = authz.problem_scope(user, "p")
    visit_clause, visit_params = authz.record_scope(user, "v")
    diary_clause, diary_params = authz.record_scope(user, "d")
    visible = db.execute(
        "SELECT 1 FROM attachment_links l WHERE l.sha256 = ? AND ("
        f" (l.record_type = 'problem' AND l.record_id IN"
        f"   (SELECT p.id FROM problems p WHERE p.id = l.record_id AND {problem_clause}))"
        f" OR (l.record_type = 'event' AND l.record_id IN (SELECT e.id FROM problem_events e"
        f"   JOIN problems p ON p.id = e.problem_id WHERE e.id = l.record_id AND {problem_clause}))"
        f" OR (l.record_type = 'visit' AND l.record_id IN"
        f"   (SELECT v.id FROM visits v WHERE v.id = l.record_id AND {visit_clause}))"
        f" OR (l.record_type = 'diary' AND l.record_id IN"
        f"   (SELECT d.id FROM diary_entries d WHERE d.id = l.record_id AND {diary_clause}))"
        ") LIMIT 1",
        [sha, *problem_params, *problem_params, *visit_params, *diary_params],
    ).fetchone()
    return rows[0] if visible else None


def make_thumbnail(photos: PhotoStore, sha: str) -> Path:
    """The photo's thumbnail, made on first request; raises UploadError for a photo
    stored before MAX_PIXELS was enforced and above it."""
    from PIL import ImageOps

    target = photos.thumb(sha)
    if target.exists():
        return target
    with _THUMBNAILING:
        if not target.exists():
            with open_image(photos.photo(sha)) as image:
                # Shrunk first, in place (a JPEG decodes straight at 1/2, 1/4 or 1/8
                # of its size), then turned upright: the full-size image is never copied.
                image.thumbnail((THUMB_SIZE, THUMB_SIZE))
                upright = ImageOps.exif_transpose(image)
                temporary = target.with_suffix(".tmp")
                upright.convert("RGB").save(temporary, "JPEG", quality=75)
                os.replace(temporary, target)
    return target
