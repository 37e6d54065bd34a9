"""Photos posted with an action on the office pages: a helper's 协办意见, the lead unit's reply.

Each action form that takes photos (``photos`` among its workflow fields) has two file inputs,
before (整改前) and after (整改后). The files are checked as the phone's uploads are
(``sync.uploads``: JPEG, PNG or WebP by their first bytes, at most ``MAX_SIZE`` bytes, at most
``MAX_PIXELS`` judged from the header before decoding), then made what the phone sends:
upright, at most ``MAX_SIDE`` pixels a side, a JPEG without metadata (no EXIF, so no
position or camera), named by the SHA-256 of those bytes in the same photo store. The event
records which photos are before and which after (``data.photos``); ``attachment_links`` ties
them to the event (``record_type`` 'event'), so whoever may see the problem sees them, on
the timeline and on the phone.

A refused file refuses the action: nothing is written, and the files this request stored
are removed again.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import threading
from dataclasses import dataclass

from server.i18n import gettext as _
from sync.uploads import MAX_SIZE, PhotoStore, UploadError, image_type, open_image

KINDS = ("before", "after")
FIELDS = {kind: f"photos_{kind}" for kind in KINDS}
MAX_PHOTOS = 9  # before and after together, per action
MAX_SIDE = 1600  # what the phone sends
JPEG_QUALITY = 85
# Decoding a large image takes memory (4 bytes a pixel): one at a time.
_DECODING = threading.Lock()


class PhotoRefused(Exception):
    """A posted file that cannot be kept: ``errors`` by form field, with the answer's status."""

    def __init__(self, field: str, message: str, status: int):
        super().__init__(message)
        self.errors = {field: message, "photos": message}
        self.status = status


@dataclass(frozen=True)
class Photo:
    kind: str
    sha256: str
    size: int
    width: int
    height: int
    stored_now: bool  # this request put the file in the store (removed if the action fails)

    def attachment(self, user_id: int, now: str) -> dict:
        return {"sha256": self.sha256, "size": self.size, "mime": "image/jpeg",
                "width": self.width, "height": self.height, "uploaded_by": user_id,
                "created_at": now}


def check_count(files: dict[str, list]) -> None:
    """Refuses more than MAX_PHOTOS files in all, before any is read."""
    total = sum(len(found) for found in files.values())
    if total > MAX_PHOTOS:
        raise PhotoRefused(FIELDS[next(k for k in KINDS if files.get(k))],
                           _("event_photos.too_many", max=MAX_PHOTOS, count=total), 400)


def check_size(kind: str, content: bytes, filename: str) -> None:
    """Refuses a file above MAX_SIZE (``content`` is read up to one byte more)."""
    if len(content) > MAX_SIZE:
        raise PhotoRefused(FIELDS[kind], _("event_photos.too_big", name=filename,
                                           max=MAX_SIZE // (1024 * 1024)), 413)


def store(photos: PhotoStore, kind: str, content: bytes, filename: str) -> Photo:
    """Check one posted image and keep it as the phone would send it (see the module)."""
    check_size(kind, content, filename)
    if image_type(content[:64]) is None:
        raise PhotoRefused(FIELDS[kind], _("event_photos.not_an_image", name=filename), 415)
    temporary = photos.root / "uploads" / f"form-{secrets.token_hex(8)}"
    temporary.write_bytes(content)
    try:
        with _DECODING:
            normal = _normalised(temporary)
    except UploadError as error:
        raise PhotoRefused(FIELDS[kind], _("event_photos.refused", name=filename,
                                           reason=error.message), error.status) from None
    finally:
        temporary.unlink(missing_ok=True)
    data, width, height = normal
    sha = hashlib.sha256(data).hexdigest()
    target = photos.photo(sha)
    stored_now = not target.exists()
    if stored_now:
        target.parent.mkdir(exist_ok=True)
        partial = target.with_name(f"{sha}.{secrets.token_hex(4)}.tmp")
        partial.write_bytes(data)
        os.replace(partial, target)
    return Photo(kind, sha, len(data), width, height, stored_now)


def _normalised(path) -> tuple[bytes, int, int]:
    from PIL import ImageOps

    with open_image(path) as image:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        upright = ImageOps.exif_transpose(image).convert("RGB")
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), upright.width, upright.height


def discard(db, photos: PhotoStore, stored: list[Photo]) -> None:
    """Remove the files an action that failed stored, unless a record holds them meanwhile."""
    for photo in stored:
        if photo.stored_now and not db.execute(
                "SELECT 1 FROM attachments WHERE sha256 = ?", [photo.sha256]).fetchone():
            photos.photo(photo.sha256).unlink(missing_ok=True)


def record(db, stored: list[Photo], user_id: int, now: str) -> dict[str, list[str]]:
    """The attachment rows of the stored photos (in the action's transaction), and the
    action's ``photos`` value: the SHA-256s by kind."""
    by_kind: dict[str, list[str]] = {}
    for photo in stored:
        db["attachments"].insert(photo.attachment(user_id, now), ignore=True)
        by_kind.setdefault(photo.kind, []).append(photo.sha256)
    return by_kind


def of_action(value) -> dict[str, list[str]]:
    """An action's ``photos`` as the workflow takes it: only {kind: [sha256, ...]} of the
    known kinds, each photo once (anything else is no photo)."""
    if not isinstance(value, dict):
        return {}
    seen: set[str] = set()
    result: dict[str, list[str]] = {}
    for kind in KINDS:
        for sha in value.get(kind) or []:
            if isinstance(sha, str) and sha not in seen:
                seen.add(sha)
                result.setdefault(kind, []).append(sha)
    return result


def link(db, event_id: str, photos: dict[str, list[str]]) -> None:
    """Tie the photos to their event, before first then after. Each must be a stored
    photo (``record`` wrote it in this transaction): a hash alone proves nothing."""
    for position, sha in enumerate(sha for kind in KINDS for sha in photos.get(kind, [])):
        db["attachment_links"].insert({"sha256": sha, "record_type": "event",
                                       "record_id": event_id, "position": position})
        if not db.execute("SELECT 1 FROM attachments WHERE sha256 = ?", [sha]).fetchone():
            raise ValueError(f"photo {sha} is not stored")
