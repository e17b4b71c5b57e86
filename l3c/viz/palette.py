"""Colours and escaping shared by the pictures (the HTML timeline and the SVG task graph).

Colours are assigned in a fixed order so that the same program always gets the same picture: the
first ten are a qualitative palette chosen to stay apart for common colour-vision deficiencies (the
Tableau 10 hues); past ten, hues step by the golden angle so that neighbours still differ.
"""
from __future__ import annotations

import html

QUALITATIVE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
UNPLACED = "#c8c8c8"


def colour(index: int) -> str:
    """The `index`-th colour of the palette (any index >= 0)."""
    if index < len(QUALITATIVE):
        return QUALITATIVE[index]
    hue = (index * 137.508) % 360.0
    return _hsl_hex(hue, 0.55, 0.55)


def _hsl_hex(hue: float, sat: float, light: float) -> str:
    c = (1 - abs(2 * light - 1)) * sat
    x = c * (1 - abs((hue / 60.0) % 2 - 1))
    m = light - c / 2
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(hue // 60) % 6]
    return "#" + "".join(f"{round((v + m) * 255):02x}" for v in (r, g, b))


def text_on(fill: str) -> str:
    """Black or white, whichever reads better on `fill` (#rrggbb)."""
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def esc(text: object) -> str:
    """Text for an HTML/SVG element or attribute value."""
    return html.escape(str(text), quote=True)
