"""The sync API: thin HTTP endpoints over the pure functions in ``sync/``."""

from __future__ import annotations

import asyncio
import os
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from server import admission, device_health
from server.errors import ApiError, NotFound
from server.i18n import gettext as _
from server.views.auth import read_json
from server.web import store, user
from sync import lookup, pull, push, uploads
from sync.epoch import latest_version, raise_mark
from sync.errors import BadRequest
from sync.schemas import UUID

RETRY_AFTER_SECONDS = 2
TUS_HEADERS = {"Tus-Resumable": uploads.TUS_VERSION, "Cache-Control": "no-store"}


def _apply_push(db, current, body, device_id, health):
    """The push's answer, and the latest version once its effects are in."""
    device_health.record(db, device_id, health)
    return push.apply_push(db, current, body, device_id), latest_version(db)


async def _mark_served(request: Request, version: int, epoch: str) -> None:
    """Remember, beside the photos, that phones may now hold versions up to
    ``version`` (as a cursor, or as acknowledged changes of their own), so that
    a restore from backup is noticed at the next start. Done before answering."""
    await run_in_threadpool(raise_mark, photo_store(request).root, version, epoch)


def _health(request: Request) -> dict | None:
    try:
        return device_health.parse(request.headers.get(device_health.HEADER))
    except device_health.BadHealth as error:
        raise ApiError(400, error.code, error.message) from None


async def sync_push(request: Request):
    body = await read_json(request)
    health = _health(request)
    device = getattr(request.state, "device", None)
    errors = store(request).errors
    try:
        result, latest = await store(request).write(
            _apply_push, user(request), body, device.id if device else None, health
        )
    except BadRequest as error:
        status = 403 if error.code == "client_owner" else 400
        raise ApiError(status, error.code, error.message) from None
    except errors.Operational as error:
        if errors.is_busy(error):
            # A temporary failure: nothing was applied; the client retries.
            return JSONResponse(
                {"error": {"code": "busy", "message": _("sync.busy")}}, status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        raise
    # Committed: the phone will drop these mutations from its outbox once it
    # reads this answer, so the versions they wrote count as served.
    await _mark_served(request, latest, result["epoch"])
    return JSONResponse(result)


def _int_param(request: Request, name: str, default: int, low: int, high: int, message: str):
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, f"bad_{name}", message)
    return int(raw)


def _read_pull_snapshot(db, current, client_id, cursor, limit, page_format, pages):
    with db.snapshot():
        if page_format == 2:
            return pull.working_set_answer(db, current, client_id, cursor, limit, pages=pages)
        return pull.Answer(pull.read_pull(db, current, client_id, cursor, limit))


def _pull_response(request: Request, answer: pull.Answer) -> Response:
    """A pull's answer; a shared snapshot page as bytes composed without re-encoding
    it (``sync/shared_pages.py``), gzipped when the client accepts it."""
    if answer.shared is None:
        return JSONResponse(answer.as_dict())
    tail = pull.dump(answer.head)[1:]
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(answer.shared.gzip_body(tail), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(answer.shared.body(tail), media_type="application/json")


def _cursor(request: Request, page_format: int):
    """Format 1: the change log's version. Format 2: ``0`` for a snapshot, or the
    token of a previous answer (or a bare version, from a phone of before)."""
    if page_format == 1:
        return _int_param(request, "cursor", 0, 0, pull.MAX_CURSOR, _("sync.bad.cursor"))
    try:
        return pull.parse_cursor(request.query_params.get("cursor", "0"))
    except pull.BadCursor:
        raise ApiError(400, "bad_cursor", _("workingset.bad_cursor")) from None


async def sync_pull(request: Request):
    client_id = request.query_params.get("client_id", "")
    if not re.fullmatch(UUID["pattern"], client_id):
        raise ApiError(400, "bad_client_id", _("sync.bad.client_id"))
    page_format = _int_param(request, "format", 1, 1, 2, _("workingset.bad_format"))
    cursor = _cursor(request, page_format)
    limit = _int_param(request, "limit", pull.DEFAULT_LIMIT, 1, pull.MAX_LIMIT,
                       _("sync.bad.limit", max=pull.MAX_LIMIT))
    health = _health(request)
    gate = request.app.state.gates["pull"]
    try:
        with gate.admit(client_id):
            if await admission.client_gone(request):
                return Response(status_code=204)  # nobody to read it
            device = getattr(request.state, "device", None)
            if health is not None and device is not None:
                await store(request).write(device_health.record, device.id, health)
            answer = await store(request).read(
                _read_pull_snapshot, user(request), client_id, cursor, limit, page_format,
                request.app.state.shared_pages)
    except admission.Full as full:
        return admission.busy(full)
    if "latest_version" in answer.head:
        await _mark_served(request, answer.head.pop("latest_version"), answer.head["epoch"])
    return _pull_response(request, answer)


async def problem_lookup(request: Request):
    """A problem outside the phone's set, found online by ledger number or words."""
    text = request.query_params.get("q", "").strip()
    if not text:
        raise ApiError(400, "lookup_missing", _("workingset.lookup.missing"))
    if len(text) > lookup.MAX_QUERY:
        raise ApiError(400, "lookup_too_long",
                       _("workingset.lookup.too_long", max=lookup.MAX_QUERY))
    result = await store(request).read(lookup.lookup, user(request), text)
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


# tus uploads --------------------------------------------------------------------


def photo_store(request: Request) -> uploads.PhotoStore:
    return request.app.state.photos


def _tus_error(error: uploads.UploadError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}},
        status_code=error.status, headers=TUS_HEADERS,
    )


def _check_tus_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != uploads.TUS_VERSION:
        raise uploads.UploadError(412, "tus_version", "Tus-Resumable: 1.0.0 required")


async def tus_options(request: Request):
    return Response(status_code=204, headers={
        **TUS_HEADERS,
        "Tus-Version": uploads.TUS_VERSION,
        "Tus-Extension": "creation,checksum",
        "Tus-Max-Size": str(uploads.MAX_SIZE),
        "Tus-Checksum-Algorithm": ",".join(uploads.CHECKSUM_ALGORITHMS),
    })


async def tus_create(request: Request):
    try:
        _check_tus_version(request)
        raw_length = request.headers.get("upload-length", "")
        if not (raw_length.isascii() and raw_length.isdigit()) or int(raw_length) < 1:
            raise uploads.UploadError(400, "bad_length", "Upload-Length required")
        length = int(raw_length)
        if length > uploads.MAX_SIZE:
            raise uploads.UploadError(413, "too_large", _("errors.http_413"))
        metadata = uploads.parse_metadata(request.headers.get("upload-metadata", ""))
        upload_id = await store(request).write(
            uploads.create_upload, photo_store(request), user(request), length, metadata
        )
    except uploads.UploadError as error:
        return _tus_error(error)
    return Response(status_code=201, headers={
        **TUS_HEADERS, "Location": f"/api/uploads/{upload_id}",
    })


async def tus_head(request: Request):
    try:
        _check_tus_version(request)
        upload = await _open_upload(request, request.path_params["upload_id"])
    except uploads.UploadError as error:
        return Response(status_code=error.status, headers=TUS_HEADERS)
    return Response(status_code=200, headers={
        **TUS_HEADERS,
        "Upload-Offset": str(photo_store(request).offset(upload)),
        "Upload-Length": str(upload.length),
    })


async def _open_upload(request: Request, upload_id: str) -> uploads.Upload:
    """The user's upload; 404 if there is none, 410 if it was refused and has ended."""
    upload = await store(request).read(uploads.get_upload, user(request), upload_id)
    if refusal := photo_store(request).refusal(upload.id):
        raise refusal
    return upload


def _locks(request: Request) -> dict[str, asyncio.Lock]:
    return request.app.state.upload_locks


async def tus_patch(request: Request):
    upload_id = request.path_params["upload_id"]
    lock = _locks(request).setdefault(upload_id, asyncio.Lock())
    if lock.locked():
        return _tus_error(uploads.UploadError(409, "busy_upload", "another PATCH is running"))
    gate = request.app.state.gates["upload"]
    async with lock:
        try:
            with gate.admit(upload_id):
                return await _patch(request, upload_id)
        except admission.Full as full:
            response = admission.busy(full)
            response.headers.update(TUS_HEADERS)
            return response
        except uploads.UploadError as error:
            return _tus_error(error)
        finally:
            _locks(request).pop(upload_id, None)


async def _patch(request: Request, upload_id: str) -> Response:
    _check_tus_version(request)
    if request.headers.get("content-type") != "application/offset+octet-stream":
        raise uploads.UploadError(415, "bad_content_type", "application/offset+octet-stream")
    photos = photo_store(request)
    await _open_upload(request, upload_id)  # this user's and not ended, before any file is touched
    with photos.appending(upload_id) as f:
        # Read again under the lock: a PATCH on another process may have just completed it.
        upload = await _open_upload(request, upload_id)
        if upload.completed_at:
            # A completed upload keeps no partial file: opening it made an empty one.
            photos.partial(upload.id).unlink(missing_ok=True)
        offset = photos.offset(upload)
        claimed = request.headers.get("upload-offset", "")
        if not (claimed.isascii() and claimed.isdigit()) or int(claimed) != offset:
            raise uploads.UploadError(409, "offset_mismatch", f"Upload-Offset must be {offset}")
        if upload.completed_at:
            return Response(status_code=204, headers={**TUS_HEADERS, "Upload-Offset": str(offset)})
        return await _append(request, photos, upload, f, offset)


async def _append(request: Request, photos: uploads.PhotoStore, upload: uploads.Upload,
                  f, offset: int) -> Response:
    """Append the request's bytes to the locked partial file; complete the upload when
    they are all there."""
    checksum = uploads.parse_checksum(request.headers.get("upload-checksum"))
    digest = uploads.CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
    received = offset
    try:
        async for chunk in request.stream():
            if received + len(chunk) > upload.length:
                f.truncate(offset)
                raise uploads.UploadError(413, "too_large", "more bytes than Upload-Length")
            f.write(chunk)
            if digest:
                digest.update(chunk)
            received += len(chunk)
    except ClientDisconnect:
        # Keep what arrived: the client resumes from here (unless it had
        # asked for a checksum, which a partial chunk cannot satisfy).
        if digest:
            f.truncate(offset)
        return Response(status_code=400)
    if digest and digest.digest() != checksum[1]:
        f.truncate(offset)
        raise uploads.UploadError(460, "checksum_mismatch", "Upload-Checksum mismatch")
    f.flush()
    os.fsync(f.fileno())
    if received == upload.length:
        attachment = uploads.finish(photos, upload, f)
        await store(request).write(uploads.record_finished, upload, attachment)
    return Response(status_code=204, headers={**TUS_HEADERS, "Upload-Offset": str(received)})


# Photos ---------------------------------------------------------------------------


async def _photo(request: Request, thumb: bool):
    sha = request.path_params["sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise NotFound(sha)
    attachment = await store(request).read(uploads.photo_visible, user(request), sha)
    if attachment is None:
        raise NotFound(sha)
    photos = photo_store(request)
    # A resident's photo is personal data: never stored by the browser either.
    headers = {"Cache-Control": "no-store"}
    if thumb:
        try:
            path = await run_in_threadpool(uploads.make_thumbnail, photos, sha)
        except uploads.UploadError as error:  # stored before MAX_PIXELS was enforced
            raise ApiError(error.status, error.code, error.message) from None
        return FileResponse(path, media_type="image/jpeg", headers=headers)
    return FileResponse(photos.photo(sha), media_type=attachment["mime"], headers=headers)


async def photo(request: Request):
    return await _photo(request, thumb=False)


async def photo_thumb(request: Request):
    return await _photo(request, thumb=True)
