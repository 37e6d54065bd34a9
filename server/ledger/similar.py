"""Problems that may be the same one as a problem: the one rule (``match``) for the office's
疑似重复 on a problem's page and the field app's 可能是同一问题 at capture
(static/app/similar.js), and the office's search for them (``similar``)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from server import authz
from server.areas import add_area_paths
from server.ledger.queries import JOINS, LIST_COLUMNS
from server.timeutil import parse_iso, to_iso

NEARBY_METRES = 300
# Words alike: the share of character bigrams two descriptions have in common (Jaccard) from
# which they may be the same problem wherever they are; and the lower share that suffices
# for two problems within NEARBY_METRES (the same category suffices there too).
TEXT_THRESHOLD = 0.3
NEARBY_TEXT_THRESHOLD = 0.1
SIMILAR_LIMIT = 10
TEXT_WINDOW_DAYS = 90


@dataclass(frozen=True)
class Match:
    distance: float | None  # metres, when both positions are known
    similarity: float  # 0..1, the descriptions' bigrams in common


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    earth = 6_371_000
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * earth * math.asin(math.sqrt(a))


def bigrams(text: str) -> set[str]:
    """Each run of Chinese characters as its pairs (a lone character as itself), and each
    other word as its pairs of letters or digits, lower-cased."""
    grams = set()
    for run in re.findall(r"[\u3400-\u9fff]+|[^\W_]+", (text or "").lower()):
        grams.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    return grams


def text_similarity(a: str, b: str) -> float:
    mine, theirs = bigrams(a), bigrams(b)
    return len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0


def match(mine: dict, theirs: dict) -> Match | None:
    """The one rule for "may be the same problem", for the office's 疑似重复 on a problem's
    page and the phone's 可能是同一问题 while a problem is recorded (static/app/similar.js
    ports it; tests check the two agree): within NEARBY_METRES (both positions known) with
    the same category or a few words in common (NEARBY_TEXT_THRESHOLD), or words alike
    (TEXT_THRESHOLD) wherever. ``mine`` and ``theirs`` have description, lat, lng and
    category_id."""
    similarity = text_similarity(mine.get("description", ""), theirs.get("description", ""))
    distance = None
    if None not in (mine.get("lat"), mine.get("lng"), theirs.get("lat"), theirs.get("lng")):
        distance = haversine_m(mine["lat"], mine["lng"], theirs["lat"], theirs["lng"])
    near = distance is not None and distance <= NEARBY_METRES
    same_category = (mine.get("category_id") is not None
                     and mine.get("category_id") == theirs.get("category_id"))
    if similarity >= TEXT_THRESHOLD or (near and (same_category
                                                 or similarity >= NEARBY_TEXT_THRESHOLD)):
        return Match(distance if near else None, similarity)
    return None


def order(found: Match) -> tuple:
    """Nearest first, then the most alike."""
    return (found.distance is None, found.distance or 0, -found.similarity)


def similar(db, user: authz.User, problem: dict) -> list[dict]:
    """The problems in the user's scope that ``match`` the problem, nearest first.

    Candidates: those within NEARBY_METRES (a box around the position), and those of the
    same village or community found within TEXT_WINDOW_DAYS. Rejected and merged
    problems are left out.
    """
    scope, params = authz.problem_scope(user, "p")
    base = (
        f"SELECT {LIST_COLUMNS}, p.lat, p.lng, p.category_id, p.description FROM problems p"
        f" {JOINS} WHERE p.id != ? AND p.status NOT IN ('rejected', 'merged') AND {scope}"
    )
    candidates: dict[str, dict] = {}
    lat, lng = problem.get("lat"), problem.get("lng")
    if lat is not None and lng is not None:
        dlat = NEARBY_METRES / 111_320
        dlng = dlat / max(0.01, math.cos(math.radians(lat)))
        for row in db.query(
            f"{base} AND p.lat BETWEEN ? AND ? AND p.lng BETWEEN ? AND ? LIMIT 500",
            [problem["id"], *params, lat - dlat, lat + dlat, lng - dlng, lng + dlng],
        ):
            candidates[row["id"]] = row
    village = db.execute(
        "SELECT path FROM areas WHERE id = ?", [problem["area_id"]]
    ).fetchone()[0]
    village = "/" + "/".join(village.strip("/").split("/")[:4]) + "/"  # level 4 or above
    found_at = parse_iso(problem["found_at"])
    window = dt.timedelta(days=TEXT_WINDOW_DAYS)
    for row in db.query(
        f"{base} AND p.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)"
        " AND p.found_at >= ? AND p.found_at < ? LIMIT 2000",
        [problem["id"], *params, village, village[:-1] + "0", to_iso(found_at - window),
         to_iso(found_at + window)],
    ):
        candidates.setdefault(row["id"], row)
    found = []
    for row in candidates.values():
        matched = match(problem, row)
        if matched is not None:
            found.append((order(matched), {
                **row,
                "distance": None if matched.distance is None else round(matched.distance),
                "similarity": round(matched.similarity * 100),
            }))
    found.sort(key=lambda pair: pair[0])
    return add_area_paths(db, [row for _key, row in found[:SIMILAR_LIMIT]])
