"""Photos posted with an action on the office pages (server/ledger/event_photos.py): the helper's
协办意见 and the lead's reply, before and after; every refusal saves nothing."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from server.ledger import event_photos
from sync import uploads
from tests.conftest import csrf_of
from tests.sync_helpers import jpeg

OPINION = "阀门已更换，管线压力恢复正常"


@pytest.fixture
def signed_part(act, world):
    """p1 dispatched to 住建局 (handler1) with 水务集团 (handler2) as helper, which signed."""
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"])])
    act("handler2", "p1", "sign_part")
    return world.problems["p1"]


def jpeg_with_position() -> bytes:
    """A camera photo: EXIF with a GPS position and a sideways orientation."""
    image = Image.new("RGB", (80, 40), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown upright, it is 40 wide and 80 high
    exif[0x8825] = {1: "N", 2: (36.0, 40.0, 12.5)}  # GPS
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def post(client, problem_id, action, data, files):
    return client.post(f"/problems/{problem_id}/actions/{action}",
                       data={**data, "csrf_token": csrf_of(client)}, files=files,
                       follow_redirects=False)


def state(db, problem_id) -> dict:
    return {
        "events": db.execute("SELECT count(*) FROM problem_events WHERE problem_id = ?",
                             [problem_id]).fetchone()[0],
        "attachments": db.execute("SELECT count(*) FROM attachments").fetchone()[0],
        "links": db.execute("SELECT count(*) FROM attachment_links").fetchone()[0],
        "part": db.execute("SELECT state FROM joint_parts WHERE problem_id = ?",
                           [problem_id]).fetchone()[0],
    }


def stored_files(app) -> set[str]:
    root = app.state.photos.root
    return {p.name for p in root.glob("??/*") if p.is_file()}


def test_an_opinion_carries_photos_before_and_after(app, login_as, db, signed_part):
    helper = login_as("handler2")
    response = post(helper, signed_part, "answer_part", {"note": OPINION}, [
        ("photos_before", ("before.jpg", jpeg_with_position(), "image/jpeg")),
        ("photos_after", ("after.png", _png(), "image/png")),
    ])
    assert response.status_code == 303, response.text
    [(event_id, data)] = db.execute(
        "SELECT id, data FROM problem_events WHERE kind = 'answer_part'").fetchall()
    photos = json.loads(data)["photos"]
    assert set(photos) == {"before", "after"}
    links = db.execute("SELECT sha256 FROM attachment_links WHERE record_type = 'event'"
                       " AND record_id = ? ORDER BY position", [event_id]).fetchall()
    assert [sha for (sha,) in links] == photos["before"] + photos["after"]
    before = app.state.photos.photo(photos["before"][0])
    with Image.open(before) as kept:
        assert kept.format == "JPEG" and kept.size == (40, 80)  # turned upright
        assert not kept.getexif() and "exif" not in kept.info  # no position left
    # Everyone who may see the problem sees them: the lead unit, the office; the page shows them.
    for username in ("handler1", "office", "handler2"):
        client = login_as(username)
        assert client.get(f"/photos/{photos['after'][0]}").status_code == 200
        page = client.get(f"/problems/{signed_part}")
        assert f"/photos/{photos['before'][0]}/thumb" in page.text and "整改后" in page.text


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 90, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_leads_reply_carries_photos(act, login_as, db, signed_part):
    act("handler2", "p1", "answer_part", note=OPINION)
    act("handler1", "p1", "sign")
    response = post(login_as("handler1"), signed_part, "reply",
                    {"outcome": "solved", "note": "已修复"},
                    [("photos_after", ("a.jpg", jpeg(seed=3), "image/jpeg"))])
    assert response.status_code == 303, response.text
    [data] = db.execute("SELECT data FROM problem_events WHERE kind = 'reply'").fetchone()
    assert list(json.loads(data)["photos"]) == ["after"]


REFUSALS = {  # what is posted: the status and the words of the message
    "not_an_image": ([("photos_before", ("notes.txt", b"just text", "text/plain"))], 415,
                     "不是 JPEG、PNG 或 WebP"),
    "too_many": ([("photos_after", (f"{n}.jpg", jpeg(seed=n), "image/jpeg"))
                  for n in range(event_photos.MAX_PHOTOS + 1)], 400, "最多 9 张"),
    "too_big": ([("photos_before", ("big.jpg", jpeg(seed=1), "image/jpeg"))], 413, "超过"),
    "too_many_pixels": ([("photos_before", ("wide.jpg", jpeg(400, 300), "image/jpeg"))], 413,
                        "无法保存"),
    "a_good_one_then_a_bad_one": ([("photos_before", ("ok.jpg", jpeg(seed=5), "image/jpeg")),
                                   ("photos_after", ("x.gif", b"GIF89a....", "image/gif"))],
                                  415, "不是 JPEG"),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_photo_refuses_the_action_and_saves_nothing(app, login_as, db, signed_part,
                                                              monkeypatch, case):
    files, status, words = REFUSALS[case]
    if case == "too_big":
        monkeypatch.setattr("server.ledger.event_photos.MAX_SIZE", 100)
    if case == "too_many_pixels":
        monkeypatch.setattr(uploads, "MAX_PIXELS", 100_000)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    before = state(db, signed_part)
    response = post(login_as("handler2"), signed_part, "answer_part", {"note": OPINION}, files)
    assert response.status_code == status, response.text
    assert words in response.text
    assert OPINION in response.text  # the form keeps what was typed
    assert state(db, signed_part) == before
    assert stored_files(app) == set()


def test_a_refused_action_removes_the_photos_it_stored(app, login_as, db, signed_part):
    # The lead cannot reply yet (the helper has not answered): the photo is not kept.
    response = post(login_as("handler1"), signed_part, "sign", {}, [])
    assert response.status_code == 303
    response = post(login_as("handler1"), signed_part, "reply",
                    {"outcome": "solved", "note": "已修复"},
                    [("photos_after", ("a.jpg", jpeg(seed=9), "image/jpeg"))])
    assert response.status_code == 409 and "水务集团" in response.text
    assert db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0
    assert stored_files(app) == set()


def test_a_typed_hash_is_no_photo(login_as, db, signed_part):
    stranger = "a" * 64
    response = post(login_as("handler2"), signed_part, "answer_part",
                    {"note": OPINION, "photos_before": stranger, "photos": stranger}, [])
    assert response.status_code == 303
    assert db.execute("SELECT count(*) FROM attachment_links").fetchone()[0] == 0
    [data] = db.execute("SELECT data FROM problem_events WHERE kind = 'answer_part'").fetchone()
    assert "photos" not in json.loads(data)


def test_actions_without_photos_ignore_files(login_as, db, signed_part):
    response = post(login_as("handler2"), signed_part, "progress_part", {"note": "进展"},
                    [("photos_before", ("a.jpg", jpeg(), "image/jpeg"))])
    assert response.status_code == 303
    assert db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0


def test_of_action_keeps_only_known_kinds_once():
    assert event_photos.of_action({"before": ["x", "x", 3], "after": ["x", "y"], "odd": ["z"]}
                                  ) == {"before": ["x"], "after": ["y"]}
    assert event_photos.of_action("x") == {}
