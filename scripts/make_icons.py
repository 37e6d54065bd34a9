"""Draw the field app's PNG icons (192, 512 and a maskable 512) into static/icons/.

Run: .venv/bin/python scripts/make_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent.parent / "static" / "icons"
BLUE = (29, 95, 168, 255)
WHITE = (255, 255, 255, 255)
LINE = (29, 95, 168, 255)
CHECK = (31, 140, 70, 255)


def draw(size: int, maskable: bool) -> Image.Image:
    scale = 4  # draw large, shrink for smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), BLUE if maskable else (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if not maskable:
        pen.rounded_rectangle([0, 0, big - 1, big - 1], radius=big // 5, fill=BLUE)
    # The content stays inside the central 60% (the maskable safe zone is 80%).
    unit = big / 100
    left, top, right, bottom = 28 * unit, 20 * unit, 72 * unit, 80 * unit
    pen.rounded_rectangle([left, top, right, bottom], radius=5 * unit, fill=WHITE)
    pen.rounded_rectangle([40 * unit, 15 * unit, 60 * unit, 25 * unit], radius=3 * unit, fill=WHITE,
                          outline=BLUE, width=int(2 * unit))
    for row in range(3):
        y = (36 + row * 12) * unit
        pen.rounded_rectangle([36 * unit, y, 64 * unit, y + 4 * unit], radius=2 * unit, fill=LINE)
    pen.line([(40 * unit, 71 * unit), (47 * unit, 77 * unit), (62 * unit, 64 * unit)], fill=CHECK,
             width=int(5 * unit), joint="curve")
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    draw(192, False).save(ICONS / "app-192.png", optimize=True)
    draw(512, False).save(ICONS / "app-512.png", optimize=True)
    draw(512, True).save(ICONS / "app-maskable-512.png", optimize=True)


if __name__ == "__main__":
    main()
