"""Series colours shared by the charts and the text panels (readable on dark and light themes).

Without colour (NO_COLOR) Textual greys everything out; every series also differs by
glyph or marker, so nothing depends on these alone.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

TRAIN: RGB = (86, 182, 194)  # teal: training curves, gradients, f'(x)
VAL: RGB = (255, 166, 43)  # orange: validation curves, activations, f(x)
EARLIER: RGB = (105, 105, 105)  # grey: earlier runs of the session, axes at zero
SWAP: RGB = (220, 80, 110)  # the hot-swap marks
CHANCE: RGB = (150, 150, 150)  # the chance-level line on the accuracy chart

#: colours of runs overlaid from the leaderboard, by run number (a run keeps its colour)
OVERLAY: tuple[RGB, ...] = (
    (102, 194, 165), (252, 141, 98), (141, 160, 203), (231, 138, 195), (166, 216, 84), (255, 217, 47),
    (229, 196, 148), (31, 120, 180), (227, 26, 28), (106, 61, 154),
)


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def overlay_rgb(index: int) -> RGB:
    return OVERLAY[index % len(OVERLAY)]


def overlay_colour(index: int) -> str:
    """The hex colour of overlay `index` (a run number)."""
    return hex_colour(overlay_rgb(index))
