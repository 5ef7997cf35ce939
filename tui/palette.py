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


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
