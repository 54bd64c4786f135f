"""The label palette: one fixed, distinct RGB colour per label value."""

from __future__ import annotations

#: Label value -> RGB, for values 1..20; larger values cycle (value 21 gets label 1's colour).
#: Chosen for mutual distinctness (after Sasha Trubetskoy's "20 simple distinct colours",
#: without its greys so that no label colour can be mistaken for image intensity).
LABEL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # 1 red
    (60, 180, 75),  # 2 green
    (255, 225, 25),  # 3 yellow
    (0, 130, 200),  # 4 blue
    (245, 130, 48),  # 5 orange
    (145, 30, 180),  # 6 purple
    (70, 240, 240),  # 7 cyan
    (240, 50, 230),  # 8 magenta
    (210, 245, 60),  # 9 lime
    (250, 190, 212),  # 10 pink
    (0, 128, 128),  # 11 teal
    (220, 190, 255),  # 12 lavender
    (170, 110, 40),  # 13 brown
    (255, 250, 200),  # 14 beige
    (128, 0, 0),  # 15 maroon
    (170, 255, 195),  # 16 mint
    (128, 128, 0),  # 17 olive
    (255, 215, 180),  # 18 apricot
    (0, 0, 128),  # 19 navy
    (0, 191, 255),  # 20 sky blue
)


def label_colour(value: int) -> tuple[int, int, int]:
    """The RGB colour of label ``value`` (>= 1); colours cycle after 20 labels."""
    return LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)]
