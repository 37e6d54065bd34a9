"""Problems that may be the same one as a problem: nearby with the same category, or with a
similar description in the same village or community (the detail page's 疑似重复)."""

from __future__ import annotations

import datetime as dt
import math
import re

from server import authz
from server.areas import add_area_paths
from server.ledger.queries import JOINS, LIST_COLUMNS
from server.timeutil import parse_iso, to_iso

NEARBY_METRES = 300
SIMILAR_LIMIT = 10
TEXT_WINDOW_DAYS = 90
TEXT_THRESHOLD = 0.3


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    earth = 6_371_000
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * earth * math.asin(math.sqrt(a))


def bigrams(text: str) -> set[str]:
    grams = set()
    for run in re.findall(r"[\u3400-\u9fff]+|[^\W_]+", text.lower()):
        grams.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    return grams


def similar(db, user: authz.User, problem: dict) -> list[dict]:
    """Problems that may be the same one: same category within NEARBY_METRES, or similar text.

    Text: problems of the same village or community found within
    TEXT_WINDOW_DAYS, whose description shares at least TEXT_THRESHOLD of its
    bigrams (Jaccard). Rejected and merged problems are left out.
    """
    scope, params = authz.problem_scope(user, "p")
    base = (
        f"SELECT {LIST_COLUMNS}, p.lat, p.lng FROM problems p {JOINS}"
        f" WHERE p.id != ? AND p.status NOT IN ('rejected', 'merged') AND {scope}"
    )
    found: dict[str, dict] = {}
    lat, lng = problem.get("lat"), problem.get("lng")
    if lat is not None and lng is not None and problem.get("category_id") is not None:
        dlat = NEARBY_METRES / 111_320
        dlng = dlat / max(0.01, math.cos(math.radians(lat)))
        for row in db.query(
            f"{base} AND p.category_id = ? AND p.lat BETWEEN ? AND ? AND p.lng BETWEEN ? AND ?"
            " LIMIT 200",
            [problem["id"], *params, problem["category_id"], lat - dlat, lat + dlat,
             lng - dlng, lng + dlng],
        ):
            distance = haversine_m(lat, lng, row["lat"], row["lng"])
            if distance <= NEARBY_METRES:
                found[row["id"]] = {**row, "distance": round(distance), "similarity": None}
    village = db.execute(
        "SELECT path FROM areas WHERE id = ?", [problem["area_id"]]
    ).fetchone()[0]
    village = "/" + "/".join(village.strip("/").split("/")[:4]) + "/"  # level 4 or above
    found_at = parse_iso(problem["found_at"])
    window = dt.timedelta(days=TEXT_WINDOW_DAYS)
    mine = bigrams(problem["description"])
    for row in db.query(
        f"{base} AND p.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)"
        " AND p.found_at >= ? AND p.found_at < ? LIMIT 2000",
        [problem["id"], *params, village, village[:-1] + "0", to_iso(found_at - window),
         to_iso(found_at + window)],
    ):
        theirs = bigrams(row["description"])
        score = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0
        if score >= TEXT_THRESHOLD:
            entry = found.setdefault(row["id"], {**row, "distance": None})
            entry["similarity"] = round(score * 100)
    return add_area_paths(db, sorted(
        found.values(),
        key=lambda row: (row["distance"] is None, row["distance"] or 0,
                         -(row["similarity"] or 0)),
    )[:SIMILAR_LIMIT])
