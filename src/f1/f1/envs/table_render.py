"""Top-down rendering of the table scene into a uint8 RGB image with numpy.

Speed comes from doing the per-episode work once: the background (table, belt, bins) is drawn at reset,
the shape masks are built once per resolution, and a step only copies the background and stamps a few
small boolean masks.
"""

from __future__ import annotations

import math

import numpy as np

from f1.envs.table_scene import BELT_Y_RANGE, COLOURS, SHAPES, Bin

TABLE_RGB = np.array((205, 195, 175), dtype=np.uint8)
BELT_RGB = np.array((105, 105, 110), dtype=np.uint8)
ARM_RGB = np.array((45, 45, 50), dtype=np.uint8)
GRIPPER_OPEN_RGB = np.array((255, 255, 255), dtype=np.uint8)
GRIPPER_CLOSED_RGB = np.array((0, 0, 0), dtype=np.uint8)
BIN_INTERIOR_MIX = 0.3  # fraction of the bin colour in its interior, the rest is table colour
BIN_WALL = 0.025  # bin wall thickness, table widths
MARKER_SIZE = 0.1  # side of the end-effector marker, table widths


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean mask of shape (size, size) for ``"square"``, ``"circle"`` or ``"triangle"``."""
    if shape not in SHAPES:
        raise ValueError(f"shape: expected one of {list(SHAPES)}, received {shape!r}")
    if size < 3:
        raise ValueError(f"size: expected at least 3 pixels, received {size}")
    centres = (np.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    u, v = np.meshgrid(centres, centres)  # u: column (x), v: row (y)
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    # Apex up, base along the bottom row: the half-width grows linearly from the top.
    return np.abs(u - 0.5) <= 0.5 * v + 0.5 / size


def ring_mask(size: int) -> np.ndarray:
    """Boolean (size, size) mask of a one-pixel square outline: the end-effector marker."""
    mask = np.ones((size, size), dtype=bool)
    mask[1:-1, 1:-1] = False
    return mask


class TableRenderer:
    """Draws table scenes at one resolution.

    Args:
        resolution: image side in pixels.
        object_size: object side in table widths.
    """

    def __init__(self, resolution: int, object_size: float) -> None:
        self.resolution = resolution
        self.object_pixels = max(3, round(object_size * resolution))
        self.masks = {name: shape_mask(name, self.object_pixels) for name in SHAPES}
        self.marker = ring_mask(max(3, round(MARKER_SIZE * resolution)))
        self.line_width = 1 if resolution <= 64 else 2
        self.colour_rgb = {name: np.array(rgb, dtype=np.uint8) for name, rgb in COLOURS.items()}
        self._line_samples: dict[int, np.ndarray] = {}
        # Whether each of the renderer's own masks is all true (checked once, not per stamp).
        self._full_masks = {id(mask): bool(mask.all()) for mask in (*self.masks.values(), self.marker)}

    def background(self, bins: tuple[Bin, ...]) -> np.ndarray:
        """Table, conveyor belt and bins, uint8 of shape (H, W, 3)."""
        res = self.resolution
        image = np.empty((res, res, 3), dtype=np.uint8)
        image[:] = TABLE_RGB
        y0, y1 = (round(y * res) for y in BELT_Y_RANGE)
        image[y0:y1] = BELT_RGB
        wall = max(1, round(BIN_WALL * res))
        for bin_ in bins:
            colour = self.colour_rgb[bin_.colour]
            (cx, cy), (hx, hy) = bin_.centre, bin_.half_size
            xa, xb = round((cx - hx) * res), round((cx + hx) * res)
            ya, yb = round((cy - hy) * res), round((cy + hy) * res)
            image[ya:yb, xa:xb] = colour
            interior = BIN_INTERIOR_MIX * colour + (1.0 - BIN_INTERIOR_MIX) * TABLE_RGB
            image[ya + wall : yb - wall, xa + wall : xb - wall] = interior.astype(np.uint8)
        return image

    def stamp(
        self, image: np.ndarray, mask: np.ndarray, x: float, y: float, rgb: np.ndarray, wrap: bool = False
    ) -> None:
        """Paint ``rgb`` where ``mask`` is true, centred at (x, y) table widths, clipped to the image.

        With ``wrap``, the part that leaves the left or right edge reappears at the other one (objects
        riding the looping conveyor).
        """
        res = self.resolution
        size = mask.shape[0]
        x0 = math.floor(x * res - 0.5 * size + 0.5)
        y0 = math.floor(y * res - 0.5 * size + 0.5)
        full = self._full_masks.get(id(mask))
        if full is None:
            full = bool(mask.all())
        _paint(image, mask, x0, y0, rgb, full)
        if wrap:
            if x0 < 0:
                _paint(image, mask, x0 + res, y0, rgb, full)
            elif x0 + size > res:
                _paint(image, mask, x0 - res, y0, rgb, full)

    def polyline(self, image: np.ndarray, points: tuple[tuple[float, float], ...], rgb: np.ndarray) -> None:
        """Draw straight segments through ``points`` (table widths), ``line_width`` pixels thick."""
        res = self.resolution
        vertices = np.asarray(points, dtype=np.float64) * res  # (K, 2) pixels
        starts, deltas = vertices[:-1], vertices[1:] - vertices[:-1]
        # One sample per pixel along the longest segment, shared by all segments (one vectorised pass).
        count = int(np.abs(deltas).max()) + 2
        t = self._line_samples.get(count)
        if t is None:
            t = self._line_samples[count] = np.linspace(0.0, 1.0, count)[None, :, None]
        pixels = np.floor(starts[:, None, :] + t * deltas[:, None, :]).astype(np.intp).reshape(-1, 2)
        rows = pixels[:, 1]
        for offset in range(self.line_width):
            cols = pixels[:, 0] + offset
            inside = (cols >= 0) & (cols < res) & (rows >= 0) & (rows < res)
            image[rows[inside], cols[inside]] = rgb


def _paint(image: np.ndarray, mask: np.ndarray, x0: int, y0: int, rgb: np.ndarray, full: bool) -> None:
    height, width = image.shape[:2]
    size = mask.shape[0]
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + size, width), min(y0 + size, height)
    if xa >= xb or ya >= yb:
        return
    window = image[ya:yb, xa:xb]
    if full:  # squares: a slice assignment, no boolean indexing
        window[:] = rgb
    else:
        window[mask[ya - y0 : yb - y0, xa - x0 : xb - x0]] = rgb


def eye_in_hand_view(table_view: np.ndarray, ee_x: float, ee_y: float) -> np.ndarray:
    """The eye-in-hand camera's image: ``table_view`` seen from above the end effector.

    The field of view is two table widths, so the table (the unit square) stays wholly in view at half the
    scale: the table view is placed on a black canvas twice its side with the end effector's pixel at the
    centre, then averaged over 2 x 2 pixels.

    Args:
        table_view: uint8 ``(R, R, 3)``, the table camera's image (R even).
        ee_x, ee_y: the end effector, table widths (x right, y down).

    Returns:
        uint8 ``(R, R, 3)``, the end effector at pixel ``(R / 2, R / 2)``.
    """
    side = table_view.shape[0]
    if table_view.shape != (side, side, 3) or side % 2 or table_view.dtype != np.uint8:
        raise ValueError(
            f"table_view: expected uint8 (R, R, 3) with R even, received {table_view.dtype} "
            f"{table_view.shape}"
        )
    column = min(max(round(ee_x * side), 0), side)
    row = min(max(round(ee_y * side), 0), side)
    canvas = np.zeros((2 * side, 2 * side, 3), dtype=np.uint16)
    canvas[side - row : 2 * side - row, side - column : 2 * side - column] = table_view
    pooled = canvas.reshape(side, 2, side, 2, 3).sum(axis=(1, 3))
    return ((pooled + 2) // 4).astype(np.uint8)
