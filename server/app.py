"""The application factory."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.templating import Jinja2Templates

from server import accounts, admission, auth, i18n
from server.db import Store, immediate
from server.db.url import PostgresServer, parse, redact
from server.errors import EXCEPTION_HANDLERS
from server.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from server.paths import TEMPLATES_DIR
from server.routes import build_routes
from server.timeutil import local
from sync.epoch import renew_epoch_if_restored, restored
from sync.shared_pages import SharedPages
from sync.uploads import PhotoStore, forgotten_uploads, repair_forgotten_uploads


def photos_dir(db_path: str | Path) -> Path:
    """The photos folder when none is named (``--photos``, ``FIELDLEDGER_PHOTOS``): beside
    the SQLite file. A PostgreSQL database has no file to put it beside: ValueError."""
    if isinstance(parse(str(db_path)), PostgresServer):
        raise ValueError(
            f"{redact(str(db_path))}: a PostgreSQL database has no file to keep the photos"
            " beside; name the photos folder (photos=, --photos DIR or FIELDLEDGER_PHOTOS)"
        )
    return Path(f"{db_path}.photos")


# Seconds a pull or an upload refused for a busy server is told to wait (clients add jitter).
PULL_RETRY_SECONDS = 2
UPLOAD_RETRY_SECONDS = 3
CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    # Force the Secure flag on cookies even when the app sees plain HTTP
    # (behind a TLS proxy that does not send X-Forwarded-Proto).
    secure_cookies: bool = False
    # Password checks (argon2) running at once, and how many more may wait before a
    # sign-in is answered 503 at once (server/auth.py, PasswordChecks).
    password_checks: int = CPUS
    password_check_queue: int = 32 * CPUS
    # Pulls and photo uploads running at once; beyond these a request is answered 503 with
    # Retry-After at once (server/admission.py). Each runs on a thread of its own.
    pull_concurrency: int = 4 * CPUS
    upload_concurrency: int = 4 * CPUS

    def per_worker(self, workers: int) -> Settings:
        """The bounds above are the machine's: each of ``workers`` processes takes its
        share (at least 1), so that together they stay within them."""
        def share(bound: int) -> int:
            # A bound of 0 (no queue at all) stays 0; any other is at least 1 per worker.
            return 0 if bound == 0 else max(1, bound // workers)

        return replace(
            self, password_checks=share(self.password_checks),
            password_check_queue=share(self.password_check_queue),
            pull_concurrency=share(self.pull_concurrency),
            upload_concurrency=share(self.upload_concurrency),
        )


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.globals["_"] = i18n.gettext
    env.globals["role_names"] = accounts.role_names
    env.filters["local"] = local
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    return templates


def create_app(
    db_path: str | Path,
    *,
    photos: str | Path | None = None,
    workers: int = 1,
    secure_cookies: bool = False,
    password_checks: int | None = None,
    password_check_queue: int | None = None,
    pull_concurrency: int | None = None,
    upload_concurrency: int | None = None,
) -> Starlette:
    """The app over one database; ``workers`` is how many processes of it serve the
    machine (the bounds given, or their defaults, are the machine's: Settings.per_worker).
    ``photos`` is required when ``db_path`` is a PostgreSQL URL."""
    photos_root = Path(photos) if photos else photos_dir(db_path)
    store = Store(db_path)
    settings = Settings(secure_cookies=secure_cookies)
    if password_checks is not None:
        settings = replace(settings, password_checks=password_checks,
                           password_check_queue=32 * password_checks)
    if password_check_queue is not None:
        settings = replace(settings, password_check_queue=password_check_queue)
    if pull_concurrency is not None:
        settings = replace(settings, pull_concurrency=pull_concurrency)
    if upload_concurrency is not None:
        settings = replace(settings, upload_concurrency=upload_concurrency)
    settings = settings.per_worker(workers)

    def check_restored(db) -> None:
        renew_epoch_if_restored(db, app.state.photos.root)
        repair_forgotten_uploads(db, app.state.photos)

    def check_new_connection(db) -> None:
        """The restore check before a new connection's first use (docs/sync-protocol.md,
        restores); the write lock only when there is something to do, so that a reader's
        new connection never waits for a long write."""
        photos = app.state.photos
        if restored(db, photos.root) or forgotten_uploads(db, photos):
            with immediate(db):
                check_restored(db)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        store.open()
        await store.write(check_restored)
        yield
        app.state.password_checks.close()
        store.close()

    app = Starlette(
        routes=build_routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(BodySizeLimitMiddleware),
            # Phones on 2G/3G: the app shell and its modules shrink to a third.
            Middleware(GZipMiddleware, minimum_size=1000),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.password_checks = auth.PasswordChecks(
        settings.password_checks, settings.password_check_queue
    )
    app.state.gates = {
        "pull": admission.Gate("pull", settings.pull_concurrency, PULL_RETRY_SECONDS),
        "upload": admission.Gate("upload", settings.upload_concurrency, UPLOAD_RETRY_SECONDS),
    }
    app.state.templates = make_templates()
    app.state.photos = PhotoStore(photos_root)
    app.state.upload_locks = {}
    app.state.shared_pages = SharedPages()
    # At start, and on PostgreSQL on every new connection too (docs/sync-protocol.md).
    store.on_connect = check_new_connection
    return app


# What ``fieldledger serve`` hands its worker processes (uvicorn starts them from an
# import string, so the settings travel in the environment).
ENVIRONMENT = {
    "photos": "FIELDLEDGER_PHOTOS",
    "workers": "FIELDLEDGER_WORKERS",
    "secure_cookies": "FIELDLEDGER_SECURE_COOKIES",
    "password_checks": "FIELDLEDGER_PASSWORD_CHECKS",
    "password_check_queue": "FIELDLEDGER_PASSWORD_CHECK_QUEUE",
    "pull_concurrency": "FIELDLEDGER_PULL_CONCURRENCY",
    "upload_concurrency": "FIELDLEDGER_UPLOAD_CONCURRENCY",
}


def app_from_environment() -> Starlette:
    """The app of ``server.app:app_from_environment``, uvicorn's factory for several
    workers: the database from ``FIELDLEDGER_DB``, the rest from ``ENVIRONMENT``."""
    from server.db.url import database_target

    given = {option: os.environ[name] for option, name in ENVIRONMENT.items()
             if os.environ.get(name)}
    return create_app(
        database_target(os.environ["FIELDLEDGER_DB"]),
        photos=given.get("photos"),
        workers=int(given.get("workers", 1)),
        secure_cookies=given.get("secure_cookies") == "1",
        **{option: int(given[option]) for option in
           ("password_checks", "password_check_queue", "pull_concurrency", "upload_concurrency")
           if option in given},
    )
