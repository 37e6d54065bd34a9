"""The bulk import page: upload a CSV or XLSX file of areas, units, categories or users."""

from __future__ import annotations

import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from server import importer
from server.errors import NotFound
from server.i18n import gettext as _
from server.web import page, redirect, render, store, user

PERMISSION = "admin.manage"
DEFAULT_KIND = "areas"
MAX_SHOWN_PROBLEMS = 200


def _kind_label(kind: str) -> str:
    return _(f"import.kinds.{kind}")


def _kinds() -> list[dict]:
    """Each kind with its label and the columns its files may have."""
    return [
        {
            "kind": kind,
            "label": _kind_label(kind),
            "fields": resource.schema(creating=True).fields,
        }
        for kind, resource in importer.KINDS.items()
    ]


def _chosen_kind(value) -> str:
    return value if value in importer.KINDS else DEFAULT_KIND


def _success_message(request: Request) -> str | None:
    count = request.query_params.get("imported", "")
    kind = request.query_params.get("kind")
    if not count.isdigit() or kind not in importer.KINDS:
        return None
    return _("import.success", count=int(count), kind=_kind_label(kind))


def _import_page(request: Request, kind: str, *, problems=(), filename="", status=200):
    problems = list(problems)
    return render(
        request,
        "admin/import.html",
        {
            "title": _("import.title"),
            "kind": kind,
            "kinds": _kinds(),
            "max_rows": importer.MAX_ROWS,
            "success": _success_message(request) if status == 200 else None,
            "problems": problems[:MAX_SHOWN_PROBLEMS],
            "hidden_problems": max(0, len(problems) - MAX_SHOWN_PROBLEMS),
            "filename": filename,
        },
        status=status,
    )


def _refused(request: Request, kind: str, key: str) -> Response:
    problem = importer.ImportProblem(importer.FILE_ROW, _(key))
    return _import_page(request, kind, problems=[problem], status=400)


async def import_form(request: Request):
    return _import_page(request, _chosen_kind(request.query_params.get("kind")))


async def import_upload(request: Request):
    form = await request.form()
    kind = form.get("kind")
    upload = form.get("file")
    if kind not in importer.KINDS:
        return _refused(request, DEFAULT_KIND, "import.errors.unknown_kind")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _refused(request, kind, "import.errors.no_file")
    # One byte more than allowed is enough to tell that the file is too large.
    content = await upload.read(importer.MAX_BYTES + 1)
    try:
        cleaned = await run_in_threadpool(
            importer.parse_and_clean, kind, upload.filename, content
        )
        report = await store(request).write(importer.write_rows, user(request), cleaned)
    except importer.ImportFailed as failure:
        return _import_page(
            request, kind, problems=failure.problems, filename=upload.filename, status=400
        )
    return redirect(f"/admin/import?kind={kind}&imported={report.created}")


async def download_template(request: Request):
    kind = request.path_params["kind"]
    if kind not in importer.KINDS:
        raise NotFound(kind)
    filename = urllib.parse.quote(_("import.template_filename", kind=_kind_label(kind)))
    return Response(
        importer.template_csv(kind),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{kind}-template.csv\"; filename*=UTF-8''{filename}"
            )
        },
    )


def routes():
    return [
        page("/admin/import", import_form, PERMISSION),
        page("/admin/import", import_upload, PERMISSION, methods=["POST"]),
        page("/admin/import/template/{kind}.csv", download_template, PERMISSION),
    ]
