"""The application factory (server/app.py): where the photos live."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.app import app_from_environment, create_app, photos_dir

# Nothing listens there: a factory that tried to connect would fail otherwise.
UNREACHABLE = "postgresql://fl:secret@/ledger?host=/nonexistent-socket-folder"


def test_the_photos_folder_sits_beside_an_sqlite_file():
    assert photos_dir(Path("/var/lib/fl/ledger.db")) == Path("/var/lib/fl/ledger.db.photos")
    assert photos_dir("ledger.db") == Path("ledger.db.photos")


def test_a_postgresql_database_has_no_folder_beside_it():
    with pytest.raises(ValueError, match="no file to keep the photos beside") as refused:
        photos_dir(UNREACHABLE)
    assert "secret" not in str(refused.value) and "fl:***@" in str(refused.value)


def test_the_factory_refuses_postgresql_without_photos_before_connecting(monkeypatch):
    with pytest.raises(ValueError, match="name the photos folder"):
        create_app(UNREACHABLE)
    monkeypatch.setenv("FIELDLEDGER_DB", UNREACHABLE)
    monkeypatch.delenv("FIELDLEDGER_PHOTOS", raising=False)
    with pytest.raises(ValueError, match="name the photos folder"):
        app_from_environment()


@pytest.mark.postgres
def test_the_factory_serves_postgresql_with_photos_named(pg_databases, tmp_path):
    name = pg_databases.create(template=pg_databases.empty)
    url = pg_databases.url_of(name)
    app = create_app(url, photos=tmp_path / "photos")
    try:
        assert app.state.photos.root == tmp_path / "photos"
        assert app.state.store.url == url
    finally:
        app.state.store.close()
        pg_databases.drop(name)
