"""The ledger's actions on one problem: every button on the problem page posts here."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from server.ledger import clock, event_photos, workflow
from server.validation import ValidationError
from server.views.pages import form_values, problem_page
from server.web import redirect, store, user
from sync.uploads import MAX_SIZE


def _posted_files(form) -> dict[str, list[UploadFile]]:
    """The image files of an action's form, by kind (before, after); empty inputs left out."""
    return {kind: [value for value in form.getlist(field)
                   if isinstance(value, UploadFile) and value.filename]
            for kind, field in event_photos.FIELDS.items()}


async def _stored_photos(request: Request, files: dict[str, list[UploadFile]]) -> list:
    """Check and keep the posted photos (raises event_photos.PhotoRefused)."""
    event_photos.check_count(files)
    photos = request.app.state.photos
    stored = []
    try:
        for kind, uploads in files.items():
            for upload in uploads:
                # One byte more than allowed is enough to tell that the file is too large.
                content = await upload.read(MAX_SIZE + 1)
                stored.append(await run_in_threadpool(
                    event_photos.store, photos, kind, content, upload.filename))
    except event_photos.PhotoRefused:
        await store(request).write(event_photos.discard, photos, stored)
        raise
    return stored


def _apply_with_photos(db, actor, problem_id: str, action: str, data: dict, stored: list):
    if stored:
        data["photos"] = event_photos.record(db, stored, actor.id, clock.now_iso())
    return workflow.apply(db, actor, problem_id, action, data)


async def problem_action(request: Request):
    problem_id = request.path_params["problem_id"]
    action = request.path_params["action"]
    form = await request.form()
    data = form_values(form.multi_items())
    takes_photos = action in workflow.ACTIONS and "photos" in workflow.ACTIONS[action].fields
    stored: list = []
    try:
        if takes_photos:
            stored = await _stored_photos(request, _posted_files(form))
        await store(request).write(_apply_with_photos, user(request), problem_id, action, data,
                                   stored)
    except event_photos.PhotoRefused as refused:
        return await problem_page(request, action=action, values=data, errors=refused.errors,
                                  status=refused.status)
    except ValidationError as error:
        await _discard(request, stored)
        return await problem_page(request, action=action, values=data, errors=error.errors,
                                  status=400)
    except workflow.TransitionError as error:
        await _discard(request, stored)
        return await problem_page(request, action=action, values=data, message=error.message,
                                  status=error.status)
    except BaseException:
        await _discard(request, stored)
        raise
    return redirect(f"/problems/{problem_id}?done={action}")


async def _discard(request: Request, stored: list) -> None:
    if stored:
        await store(request).write(event_photos.discard, request.app.state.photos, stored)
