"""Bulk import from CSV and XLSX: whole files or nothing, every problem with its row number.

Importer functions run against a real SQLite file; the upload page runs through the
real app. Spreadsheets are generated here with csv and openpyxl.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import Workbook
from starlette.testclient import TestClient

from server import auth, importer
from server.cli import main as cli_main
from server.db import immediate, open_database
from server.i18n import gettext as _
from server.importer import ImportFailed
from tests.conftest import ROLE_USERS, csrf_of

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
TABLES = ("areas", "units", "categories", "users")

AREA_TREE = [
    ["区划编码", "区域名称", "层级", "上级区域"],
    ["370102001001", "幸福社区", "村/社区", "370102001"],  # before its parent: order is free
    ["370100", "青川市", "市", ""],
    ["370102", "东城区", "县/区", "370100"],
    ["370102001", "杏花街道", "3", "370102"],
    ["370103", "西湖区", "2", "370100"],
]


# Helpers -------------------------------------------------------------------


def csv_bytes(rows, *, encoding="utf-8", delimiter=",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def counts(db) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def run_import(db, actor, kind: str, filename: str, content: bytes):
    cleaned = importer.parse_and_clean(kind, filename, content)
    with immediate(db):
        return importer.write_rows(db, actor, cleaned)


def failure_of(db, actor, kind: str, filename: str, content: bytes) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as caught:
        run_import(db, actor, kind, filename, content)
    return [(problem.row, problem.message) for problem in caught.value.problems]


def area_paths(db) -> dict[str, str]:
    return dict(db.execute("SELECT code, path FROM areas").fetchall())


@pytest.fixture
def empty_db(db_path):
    connection = open_database(db_path)
    yield connection
    connection.close()


@pytest.fixture
def admin(db, world):
    return auth.load_user(db, world.users["admin"])


@pytest.fixture
def admin_d2(db, world):
    return auth.load_user(db, world.users["admin_d2"])


# A fresh deployment: the area tree -------------------------------------------


def test_area_tree_imports_into_an_empty_database(empty_db, tmp_path):
    path = tmp_path / "areas.csv"
    path.write_bytes(csv_bytes(AREA_TREE))

    report = importer.import_file(empty_db, importer.system_actor(empty_db), "areas", path)

    assert report.created == 5
    paths = area_paths(empty_db)
    ids = dict(empty_db.execute("SELECT code, id FROM areas").fetchall())
    city, district, town = ids["370100"], ids["370102"], ids["370102001"]
    assert paths["370100"] == f"/{city}/"
    assert paths["370102"] == f"/{city}/{district}/"
    assert paths["370102001001"] == f"/{city}/{district}/{town}/{ids['370102001001']}/"
    assert paths["370103"] == f"/{city}/{ids['370103']}/"
    assert empty_db.execute("SELECT count(*) FROM areas WHERE active = 1").fetchone()[0] == 5


def test_system_actor_covers_everything_then_the_root(empty_db, tmp_path):
    assert importer.system_actor(empty_db).area_path == "/"
    path = tmp_path / "areas.csv"
    path.write_bytes(csv_bytes([AREA_TREE[0], *AREA_TREE[2:4]]))
    importer.import_file(empty_db, importer.system_actor(empty_db), "areas", path)
    actor = importer.system_actor(empty_db)
    assert actor.area_path == area_paths(empty_db)["370100"]
    assert actor.can("admin.manage")


def test_second_root_is_refused(empty_db, tmp_path):
    rows = [AREA_TREE[0], ["370100", "青川市", "市", ""], ["370200", "另一市", "市", ""]]
    problems = failure_of(empty_db, importer.system_actor(empty_db), "areas", "a.csv",
                          csv_bytes(rows))
    assert problems == [(3, "层级：" + _("area.one_root"))]
    assert counts(empty_db)["areas"] == 0


def test_command_line_import(db_path, tmp_path, capsys):
    database = db_path
    good, bad = tmp_path / "areas.csv", tmp_path / "bad.csv"
    good.write_bytes(csv_bytes(AREA_TREE))
    bad.write_bytes(csv_bytes([AREA_TREE[0], ["370199", "无上级区", "县/区", "999999"]]))

    assert cli_main(["--db", str(database), "import", "areas", str(good)]) == 0
    assert cli_main(["--db", str(database), "import", "areas", str(bad)]) == 2
    assert "row 2" in capsys.readouterr().err
    assert cli_main(["--db", str(database), "import", "areas", str(tmp_path / "nope.csv")]) == 2


# Units, categories and users from XLSX --------------------------------------


def test_units_categories_and_users_from_xlsx(db, admin):
    units = xlsx_bytes([
        ["单位名称", "所属区域", "联系人", "联系电话"],
        ["东城区城管局", 370102, "赵六", 13800138000],
        ["杏花街道办事处", 370102001.0, "钱七", "0531-88886666"],
    ])
    assert run_import(db, admin, "units", "units.xlsx", units).created == 2
    unit = db.execute(
        "SELECT a.code, u.contact_phone, u.active FROM units u JOIN areas a ON a.id = u.area_id"
        " WHERE u.name = '东城区城管局'"
    ).fetchone()
    assert unit == ("370102", "13800138000", 1)

    categories = xlsx_bytes([
        ["类别编码", "类别名称", "默认责任单位", "办理时限（工作日）", "启用"],
        ["road", "道路", "东城区城管局", 15, "是"],
        ["noise", "噪音", "", 5.0, "否"],
    ])
    assert run_import(db, admin, "categories", "cat.xlsx", categories).created == 2
    assert db.execute(
        "SELECT time_limit_days, active FROM categories WHERE code = 'noise'"
    ).fetchone() == (5, 0)

    users = xlsx_bytes([
        ["用户名", "姓名", "手机号", "角色", "管辖区域", "所属单位", "初始密码"],
        ["zhang3", "张三", 13900001111, "走访干部、台账管理员", 370102, None, "Pass-word-1"],
        ["li4", "李四", None, "承办人", 370100, "东城区城管局", "Pass-word-2"],
    ])
    assert run_import(db, admin, "users", "users.xlsx", users).created == 2
    zhang = db.execute(
        "SELECT u.roles, a.code, u.phone, u.active, u.password_hash FROM users u"
        " JOIN areas a ON a.id = u.area_id WHERE username = 'zhang3'"
    ).fetchone()
    assert zhang[:4] == ("field,office", "370102", "13900001111", 1)
    assert auth.verify_password(zhang[4], "Pass-word-1")
    li_hash = db.execute("SELECT password_hash FROM users WHERE username = 'li4'").fetchone()[0]
    assert auth.verify_password(li_hash, "Pass-word-2")
    assert not auth.verify_password(li_hash, "Pass-word-1")


def test_whole_numbers_in_cells_become_plain_text():
    assert importer.cell_text(370102) == "370102"
    assert importer.cell_text(370102.0) == "370102"
    assert importer.cell_text(13800138000.0) == "13800138000"
    assert importer.cell_text(1.5) == "1.5"
    assert importer.cell_text(None) == ""
    assert importer.cell_text(True) == "1"


# Encodings and separators -----------------------------------------------------


def test_gbk_csv_from_chinese_excel(db, admin):
    rows = [["单位名称", "所属区域", "联系人"], ["东城区市场监管局", "370102", "孙八"]]
    assert run_import(db, admin, "units", "units.csv", csv_bytes(rows, encoding="gbk")).created == 1
    assert db.execute("SELECT contact_name FROM units WHERE name = '东城区市场监管局'").fetchone()


def test_utf8_bom_csv(db, admin):
    rows = [["单位名称", "所属区域"], ["东城区水务局", "370102"]]
    content = csv_bytes(rows, encoding="utf-8-sig")
    assert content.startswith(b"\xef\xbb\xbf")
    assert run_import(db, admin, "units", "units.csv", content).created == 1


@pytest.mark.parametrize("delimiter", ["\t", ";"])
def test_tab_and_semicolon_separated(db, admin, delimiter):
    content = csv_bytes([["单位名称", "所属区域"], ["东城区教育局", "370102"]], delimiter=delimiter)
    assert run_import(db, admin, "units", "units.csv", content).created == 1


def test_field_names_as_headers_ignore_case_and_spaces(db, admin):
    content = csv_bytes([[" Name ", "AREA_CODE", "Contact Phone"], ["东城区卫健局", "370102", ""]])
    assert run_import(db, admin, "units", "units.csv", content).created == 1


def test_empty_rows_are_skipped_and_numbering_follows_the_sheet(db, admin):
    content = xlsx_bytes([
        ["单位名称", "所属区域"],
        ["东城区民政局", 370102],
        [None, None],
        ["东城区文旅局", 999999],
    ])
    assert failure_of(db, admin, "units", "u.xlsx", content) == [
        (4, "所属区域：" + _("validation.unknown_area", value="999999")),
    ]


# Bad rows: nothing is imported ------------------------------------------------


def test_bad_rows_are_all_reported_and_nothing_is_saved(db, admin):
    before = counts(db)
    content = csv_bytes([
        ["单位名称", "所属区域", "联系人", "联系电话"],
        ["东城区司法局", "370102", "周九", "0531-1111111"],
        ["不存在区域的单位", "999999", "", ""],
        ["东城区税务局", "370102", "", ""],
        ["电话有误的单位", "370102", "", "call me"],
        ["住建局", "370100", "", ""],  # already in the database
        ["", "370102", "", ""],
    ])

    problems = failure_of(db, admin, "units", "units.csv", content)

    assert problems == [
        (3, "所属区域：" + _("validation.unknown_area", value="999999")),
        (5, _("validation.phone", label="联系电话")),
        (6, _("validation.duplicate", label="单位名称")),
        (7, _("validation.required", label="单位名称")),
    ]
    assert counts(db) == before


def test_duplicates_within_the_file(db, admin):
    before = counts(db)
    content = csv_bytes([
        ["用户名", "姓名", "角色", "管辖区域", "初始密码"],
        ["wang5", "王五", "走访干部", "370102", "Pass-word-5"],
        ["Wang5", "王五二", "走访干部", "370102", "Pass-word-6"],
    ])
    assert failure_of(db, admin, "users", "users.csv", content) == [
        (3, _("import.errors.duplicate_in_file", label="用户名", value="Wang5", row=2)),
    ]
    assert counts(db) == before


def test_area_duplicate_code_within_file(empty_db):
    rows = [*AREA_TREE, ["370103", "又一个西湖区", "2", "370100"]]
    problems = failure_of(empty_db, importer.system_actor(empty_db), "areas", "a.csv",
                          csv_bytes(rows))
    assert problems == [
        (7, _("import.errors.duplicate_in_file", label="区划编码", value="370103", row=6)),
    ]
    assert counts(empty_db)["areas"] == 0


def test_active_column_words(db, admin):
    content = csv_bytes([
        ["单位名称", "所属区域", "启用"],
        ["甲单位", "370102", "是"],
        ["乙单位", "370102", "停用"],
        ["丙单位", "370102", ""],
    ])
    run_import(db, admin, "units", "u.csv", content)
    active = dict(db.execute("SELECT name, active FROM units WHERE name LIKE '_单位'").fetchall())
    assert active == {"甲单位": 1, "乙单位": 0, "丙单位": 1}

    bad = csv_bytes([["单位名称", "所属区域", "启用"], ["丁单位", "370102", "也许"]])
    assert failure_of(db, admin, "units", "u.csv", bad) == [
        (2, _("import.errors.bad_bool", label="启用", value="也许")),
    ]


def test_cells_outside_the_header_are_reported(db, admin):
    content = b"\xe5\x8d\x95\xe4\xbd\x8d\xe5\x90\x8d\xe7\xa7\xb0,area_code\r\nA,370102,oops\r\n"
    problems = failure_of(db, admin, "units", "u.csv", content)
    assert problems == [(2, _("import.errors.extra_cells", value="oops"))]


def test_users_roles_accept_codes_and_labels(db, admin):
    content = csv_bytes([
        ["username", "display_name", "roles", "area_code", "password"],
        ["chen1", "陈一", "field, leader", "370102", "Pass-word-7"],
        ["chen2", "陈二", "走访干部；领导", "370102", "Pass-word-8"],
        ["chen3", "陈三", "走访干部 管理者", "370102", "Pass-word-9"],
    ])
    problems = failure_of(db, admin, "users", "users.csv", content)
    assert problems == [(4, _("validation.choice", label="角色", value="管理者"))]


def test_handler_without_unit_is_a_row_error(db, admin):
    content = csv_bytes([
        ["用户名", "姓名", "角色", "管辖区域", "初始密码"],
        ["he1", "何一", "承办人", "370102", "Pass-word-1"],
    ])
    assert failure_of(db, admin, "users", "users.csv", content) == [
        (2, _("user.handler_needs_unit")),
    ]


# Header problems --------------------------------------------------------------


def test_unknown_header_is_named(db, admin):
    content = csv_bytes([["单位名称", "所属区域", "备注"], ["东城区人社局", "370102", "x"]])
    [(row, message)] = failure_of(db, admin, "units", "u.csv", content)
    assert row == 1
    assert "备注" in message


def test_missing_required_column(empty_db):
    content = csv_bytes([["区域名称", "层级"], ["青川市", "市"]])
    [(row, message)] = failure_of(empty_db, importer.system_actor(empty_db), "areas", "a.csv",
                                  content)
    assert (row, message) == (1, _("import.errors.missing_columns", columns="区划编码"))


def test_same_column_twice(db, admin):
    content = csv_bytes([["单位名称", "name", "所属区域"], ["甲", "甲", "370102"]])
    assert failure_of(db, admin, "units", "u.csv", content) == [
        (1, _("import.errors.duplicate_column", column="name")),
    ]


def test_header_only(db, admin):
    assert failure_of(db, admin, "units", "u.csv", csv_bytes([["单位名称", "所属区域"]])) == [
        (0, _("import.errors.no_rows")),
    ]


# Files that cannot be imported ------------------------------------------------


def test_too_many_rows():
    rows = [["单位名称", "所属区域"], *([f"单位{n}", "370102"] for n in range(20_001))]
    with pytest.raises(ImportFailed) as caught:
        importer.read_table("big.csv", csv_bytes(rows))
    assert caught.value.problems[0].message == _("import.errors.too_many_rows", max=20_000)


def test_exactly_the_row_limit_is_read():
    rows = [["单位名称", "所属区域"], *([f"单位{n}", "370102"] for n in range(20_000))]
    header, data = importer.read_table("big.csv", csv_bytes(rows))
    assert len(data) == 20_000
    assert data[-1][0] == 20_001


def test_too_large_file():
    with pytest.raises(ImportFailed) as caught:
        importer.read_table("big.csv", b"a" * (importer.MAX_BYTES + 1))
    assert caught.value.problems[0].message == _("import.errors.too_large", mb=5)


@pytest.mark.parametrize(
    "filename, content, key",
    [
        ("logo.png", PNG, "import.errors.unknown_format"),
        ("logo.csv", PNG, "import.errors.binary_csv"),
        ("logo.xlsx", PNG, "import.errors.bad_xlsx"),
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "import.errors.old_excel"),
        ("empty.csv", b"", "import.errors.empty_file"),
        ("blank.csv", b"\r\n\r\n", "import.errors.no_header"),
    ],
)
def test_unreadable_files_are_refused_clearly(filename, content, key):
    with pytest.raises(ImportFailed) as caught:
        importer.parse_and_clean("units", filename, content)
    assert [(p.row, p.message) for p in caught.value.problems] == [(0, _(key))]


def test_unknown_kind():
    with pytest.raises(ImportFailed) as caught:
        importer.parse_and_clean("problems", "x.csv", b"a,b\r\n1,2\r\n")
    assert caught.value.problems[0].message == _("import.errors.unknown_kind")


# Scope ------------------------------------------------------------------------


def test_district_admin_cannot_import_outside_the_district(db, admin_d2):
    before = counts(db)
    units = csv_bytes(
        [["单位名称", "所属区域"], ["西湖区城管局", "370103"], ["越界单位", "370102"]]
    )
    assert failure_of(db, admin_d2, "units", "u.csv", units) == [
        (3, "所属区域：" + _("validation.unknown_area", value="370102")),
    ]
    areas = csv_bytes([["区划编码", "区域名称", "层级", "上级区域"],
                       ["370102009", "越界街道", "3", "370102"]])
    assert failure_of(db, admin_d2, "areas", "a.csv", areas) == [
        (2, "上级区域：" + _("validation.unknown_area", value="370102")),
    ]
    assert counts(db) == before


def test_district_admin_cannot_import_accounts_of_a_unit_outside_the_district(db, admin_d2):
    """A handler sees every problem of their unit: a district administrator may attach an
    imported account only to a unit inside the district, and the whole file is refused."""
    with immediate(db):
        importer.import_rows(db, admin_d2, "units", [(2, {"单位名称": "西湖区城管局",
                                                          "所属区域": "370103"})])
    before = counts(db)
    audited = db.execute("SELECT count(*) FROM admin_audit").fetchone()[0]
    users = csv_bytes([
        ["username", "display_name", "roles", "area_code", "unit_name", "password"],
        ["xihu_handler", "西湖承办", "handler", "370103", "西湖区城管局", "long-password-1"],
        ["city_handler", "越界承办", "handler", "370103", "住建局", "long-password-1"],
    ])
    [(row, message)] = failure_of(db, admin_d2, "users", "users.csv", users)
    assert row == 3
    assert _("audit.unit_outside_area", value="住建局", area="西湖区") in message
    assert counts(db) == before
    assert db.execute("SELECT count(*) FROM admin_audit").fetchone()[0] == audited
    inside = csv_bytes([users.decode().splitlines()[0].split(","),
                        users.decode().splitlines()[1].split(",")])
    assert run_import(db, admin_d2, "users", "users.csv", inside).created == 1


def test_write_rows_needs_a_transaction(db, admin):
    cleaned = importer.parse_and_clean(
        "units", "u.csv", csv_bytes([["单位名称", "所属区域"], ["甲", "370102"]])
    )
    with pytest.raises(importer.NotInTransaction):
        importer.write_rows(db, admin, cleaned)


def test_import_rows_in_the_callers_transaction(db, admin):
    rows = [(2, {"单位名称": "东城区应急局", "所属区域": "370102"})]
    with immediate(db):
        assert importer.import_rows(db, admin, "units", rows).created == 1
    assert db.execute("SELECT count(*) FROM units WHERE name = '东城区应急局'").fetchone()[0] == 1



def test_a_row_holding_nul_is_refused_naming_its_columns_and_nothing_is_saved(db, admin):
    before = counts(db)
    rows = [(2, {"单位名称": "东城区应急局", "所属区域": "370102"}),
            (3, {"单位名称": "东城区\x00民政局", "所属区域": "370102", "联系人": "\x00"}),
            (4, {"单位名称": "东城区水务局", "所属区域": "370102", "": "\x00"})]
    with pytest.raises(ImportFailed) as caught, immediate(db):
        importer.import_rows(db, admin, "units", rows)
    assert [(problem.row, problem.message) for problem in caught.value.problems] == [
        (3, _("import.errors.nul", columns="单位名称、联系人")),
        (4, _("import.errors.nul", columns=_("import.errors.no_column"))),
    ]
    assert counts(db) == before


def test_an_uploaded_csv_holding_nul_is_refused_and_nothing_is_saved(signed_in, db):
    client = signed_in("admin")
    before = counts(db)
    content = csv_bytes([["单位名称", "所属区域"], ["东城区\x00民政局", "370102"]])
    response = upload(client, "units", "units.csv", content)
    assert response.status_code == 400
    assert _("import.errors.binary_csv") in response.text
    assert counts(db) == before


# Templates --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(importer.KINDS))
def test_csv_template_reads_back(kind):
    content = importer.template_csv(kind)
    assert content.startswith(b"\xef\xbb\xbf")
    header, rows = importer.read_table(f"{kind}.csv", content)
    assert header == importer.column_titles(importer.KINDS[kind])
    assert len(rows) == 1
    cleaned = importer.clean_rows(kind, header, rows)
    assert cleaned.problems == []


# The upload page --------------------------------------------------------------


@pytest.fixture
def signed_in(login_as):
    return login_as


def upload(client: TestClient, kind: str, filename: str, content: bytes):
    return client.post(
        "/admin/import",
        data={"kind": kind, "csrf_token": csrf_of(client)},
        files={"file": (filename, content, "application/octet-stream")},
        follow_redirects=False,
    )


def test_admin_uploads_a_spreadsheet(signed_in, db):
    client = signed_in("admin")
    page = client.get("/admin/import")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    content = xlsx_bytes(
        [["单位名称", "所属区域"], ["东城区体育局", 370102], ["东城区档案馆", 370102]]
    )

    response = upload(client, "units", "units.xlsx", content)

    assert response.status_code == 303
    assert response.headers["location"] == "/admin/import?kind=units&imported=2"
    done = client.get(response.headers["location"])
    assert _("import.success", count=2, kind="责任单位") in done.text
    assert db.execute("SELECT count(*) FROM units WHERE name LIKE '东城区%'").fetchone()[0] == 2


def test_bad_upload_shows_rows_and_saves_nothing(signed_in, db):
    client = signed_in("admin")
    before = counts(db)
    content = csv_bytes([["单位名称", "所属区域"], ["甲单位", "370102"], ["乙单位", "999999"]])

    response = upload(client, "units", "units.csv", content)

    assert response.status_code == 400
    assert "<td>3</td>" in response.text
    assert "找不到编码为“999999”的区域" in response.text
    assert '<option value="units" selected>' in response.text
    assert counts(db) == before


@pytest.mark.parametrize(
    "kind, filename, content, message",
    [
        ("units", "", b"", "import.errors.no_file"),
        ("units", "e.csv", b"", "import.errors.empty_file"),
        ("nope", "u.csv", b"a\r\n1\r\n", "import.errors.unknown_kind"),
        ("units", "logo.png", PNG, "import.errors.unknown_format"),
        ("units", "big.csv", b"a" * (importer.MAX_BYTES + 10), "import.errors.too_large"),
    ],
)
def test_unusable_uploads_are_refused(signed_in, kind, filename, content, message):
    client = signed_in("admin")
    response = upload(client, kind, filename, content)
    assert response.status_code == 400
    assert _(message, mb=5) in response.text


def test_upload_without_csrf_is_refused(signed_in, db):
    client = signed_in("admin")
    before = counts(db)
    response = client.post(
        "/admin/import", data={"kind": "units"},
        files={"file": ("u.csv", csv_bytes([["单位名称", "所属区域"], ["甲", "370102"]]))},
    )
    assert response.status_code == 403
    assert counts(db) == before


@pytest.mark.parametrize("role", ["field", "office", "handler", "leader"])
def test_other_roles_may_not_import(signed_in, db, role):
    client = signed_in(ROLE_USERS[role])
    before = counts(db)
    content = csv_bytes([["单位名称", "所属区域"], ["甲单位", "370102"]])
    assert client.get("/admin/import").status_code == 403
    assert client.get("/admin/import/template/units.csv").status_code == 403
    assert upload(client, "units", "u.csv", content).status_code == 403
    assert counts(db) == before


def test_template_download(signed_in):
    client = signed_in("admin")
    response = client.get("/admin/import/template/users.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert response.content.decode("utf-8-sig").splitlines()[0].startswith("用户名,姓名")
    assert client.get("/admin/import/template/problems.csv").status_code == 404


def test_district_admin_upload_stays_in_scope(signed_in, db):
    client = signed_in("admin_d2")
    content = csv_bytes([["单位名称", "所属区域"], ["越界单位", "370102"]])
    response = upload(client, "units", "u.csv", content)
    assert response.status_code == 400
    assert db.execute("SELECT count(*) FROM units WHERE name = '越界单位'").fetchone()[0] == 0


def test_docs_list_every_column():
    docs = (Path(__file__).parent.parent / "docs" / "import.md").read_text(encoding="utf-8")
    for resource in importer.KINDS.values():
        for title in importer.column_titles(resource):
            assert title in docs
