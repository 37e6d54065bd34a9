"""The fieldledger command."""

from __future__ import annotations

from server import auth
from server.cli import main
from server.db import open_database


def test_create_user_and_sign_in(db_path, world, capsys):
    code = main(["--db", str(db_path), "create-user", "wang", "--roles", "field,office",
                 "--area", "370102", "--password", "long-enough-1", "--display-name", "王伟"])
    assert code == 0
    db = open_database(db_path)
    row = next(db["users"].rows_where("username = ?", ["wang"]))
    assert row["roles"] == "field,office"
    assert auth.verify_password(row["password_hash"], "long-enough-1")


def test_create_user_reports_bad_input_and_saves_nothing(db_path, world, capsys):
    code = main(["--db", str(db_path), "create-user", "x", "--roles", "boss",
                 "--area", "999", "--password", "short"])
    assert code == 2
    err = capsys.readouterr().err
    assert "roles" in err and "password" in err
    assert open_database(db_path)["users"].count == len(world.users)


def test_create_user_needs_areas_first(tmp_path, capsys):
    code = main(["--db", str(tmp_path / "empty.db"), "create-user", "admin", "--roles", "admin",
                 "--area", "1", "--password", "long-enough-1"])
    assert code == 1
    assert "import" in capsys.readouterr().err


def test_import_command_all_or_nothing(db_path, world, tmp_path, capsys):
    good = tmp_path / "units.csv"
    good.write_text("单位名称,所属区域\n东城区体育局,370102\n", encoding="utf-8-sig")
    assert main(["--db", str(db_path), "import", "units", str(good)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "单位名称,所属区域\n东城区档案馆,370102\n无效单位,999999\n", encoding="utf-8-sig"
    )
    assert main(["--db", str(db_path), "import", "units", str(bad)]) == 2
    assert "row 3" in capsys.readouterr().err
    names = {row["name"] for row in open_database(db_path)["units"].rows}
    assert "东城区体育局" in names and "东城区档案馆" not in names


def test_revoke_devices(db_path, world, client, capsys):
    from tests.conftest import api_login

    token = api_login(client, "field1")
    assert main(["--db", str(db_path), "revoke-devices", "field1", "--wipe"]) == 0
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["error"]["code"] == "device_wiped"


def test_serve_and_demo_print_the_field_app_address(db_path, world, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    for command in ("serve", "demo"):
        assert main(["--db", str(db_path), command, "--host", "0.0.0.0", "--port", "8123"]) == 0
        out = capsys.readouterr().out
        assert "http://0.0.0.0:8123/app/" in out and "手机走访 App" in out
