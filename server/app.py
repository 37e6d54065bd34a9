"""The application factory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.templating import Jinja2Templates

from server import accounts, i18n
from server.db import Store
from server.drafts import DraftStore
from server.errors import EXCEPTION_HANDLERS
from server.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from server.paths import TEMPLATES_DIR
from server.routes import build_routes
from server.timeutil import local
from sync.epoch import renew_epoch_if_restored
from sync.uploads import PhotoStore, repair_forgotten_uploads


def photos_dir(db_path: str | Path) -> Path:
    return Path(f"{db_path}.photos")


@dataclass(frozen=True)
class Settings:
    # Force the Secure flag on cookies even when the app sees plain HTTP
    # (behind a TLS proxy that does not send X-Forwarded-Proto).
    secure_cookies: bool = False


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.globals["_"] = i18n.gettext
    env.globals["role_names"] = accounts.role_names
    env.filters["local"] = local
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    return templates


def create_app(db_path: str | Path, *, secure_cookies: bool = False) -> Starlette:
    store = Store(db_path)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        store.open()
        await store.write(renew_epoch_if_restored, app.state.photos.root)
        await store.write(repair_forgotten_uploads, app.state.photos)
        yield
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
    app.state.settings = Settings(secure_cookies=secure_cookies)
    app.state.templates = make_templates()
    app.state.photos = PhotoStore(photos_dir(db_path))
    app.state.upload_locks = {}
    app.state.drafts = DraftStore()
    return app
