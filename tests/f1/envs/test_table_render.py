"""Renderer: shape masks, background layout, clipped and wrapped stamping, line drawing."""

import numpy as np
import pytest

from f1.envs.table_render import (
    BELT_RGB,
    TABLE_RGB,
    TableRenderer,
    eye_in_hand_view,
    ring_mask,
    shape_mask,
)
from f1.envs.table_scene import BELT_Y_RANGE, COLOURS, Bin

RED = np.array(COLOURS["red"], dtype=np.uint8)


def test_shape_masks_differ_and_have_their_shape():
    square, circle, triangle = (shape_mask(s, 9) for s in ("square", "circle", "triangle"))
    assert square.all()
    assert not circle[0, 0]
    assert circle[4, 4]
    assert np.array_equal(circle, circle.T)
    assert triangle[:4].sum() < triangle[5:].sum()  # narrow apex on top, wide base below
    assert np.array_equal(triangle, triangle[:, ::-1])  # left-right symmetric
    assert len({m.tobytes() for m in (square, circle, triangle)}) == 3


def test_shape_mask_rejects_unknown_shapes_and_tiny_sizes():
    with pytest.raises(ValueError, match=r"shape: expected one of \['square', 'circle', 'triangle'\]"):
        shape_mask("star", 9)
    with pytest.raises(ValueError, match="size: expected at least 3"):
        shape_mask("square", 2)


def test_ring_mask_is_a_hollow_outline():
    ring = ring_mask(5)
    assert ring.sum() == 16
    assert not ring[1:-1, 1:-1].any()


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_background_draws_table_belt_and_bins(resolution):
    renderer = TableRenderer(resolution, 0.1)
    bins = (Bin("red", (0.2, 0.14)), Bin("blue", (0.8, 0.14)))
    image = renderer.background(bins)
    assert image.shape == (resolution, resolution, 3)
    assert image.dtype == np.uint8
    belt_row = int(np.mean(BELT_Y_RANGE) * resolution)
    assert (image[belt_row] == BELT_RGB).all()
    assert (image[-1] == TABLE_RGB).all()
    wall_row = round((0.14 - 0.09) * resolution)  # the bins' top wall
    assert (image[wall_row, round(0.2 * resolution)] == RED).all()
    assert (image[wall_row, round(0.8 * resolution)] == COLOURS["blue"]).all()


def test_stamp_is_clipped_at_the_image_border():
    renderer = TableRenderer(64, 0.1)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    renderer.stamp(image, renderer.masks["square"], 1.0, 0.5, RED)  # half of it leaves on the right
    painted = (image == RED).all(axis=2)
    size = renderer.object_pixels
    assert painted[:, -1].sum() == size
    assert painted.sum() == size * (size - size // 2) or painted.sum() == size * (size // 2)
    assert not painted[:, :32].any()


def test_wrapped_stamp_reappears_on_the_other_side():
    renderer = TableRenderer(64, 0.1)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    renderer.stamp(image, renderer.masks["square"], 0.995, 0.5, RED, wrap=True)
    painted = (image == RED).all(axis=2)
    assert painted[:, -1].any()
    assert painted[:, 0].any()
    assert painted.sum() == renderer.object_pixels**2


def test_polyline_draws_a_connected_line_and_clips_off_image_parts():
    renderer = TableRenderer(64, 0.1)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    renderer.polyline(image, ((0.5, 1.2), (0.5, 0.5), (0.9, 0.5)), RED)
    painted = (image == RED).all(axis=2)
    assert painted[32:, 32].all()  # vertical segment down to (and beyond) the bottom edge
    assert painted[32, 32:57].all()  # horizontal segment
    assert painted.sum() < 70


@pytest.mark.parametrize(("ee_x", "ee_y"), [(0.5, 0.5), (0.0, 0.0), (1.0, 0.25), (0.3, 0.9)])
def test_the_eye_in_hand_view_centres_the_end_effector_and_keeps_the_whole_table(ee_x, ee_y):
    side = 64
    table = np.full((side, side, 3), 200, dtype=np.uint8)
    row, column = round(ee_y * side), round(ee_x * side)
    table[min(row, side - 2) : min(row, side - 2) + 2, min(column, side - 2) : min(column, side - 2) + 2] = (
        200,
        0,
        200,
    )
    view = eye_in_hand_view(table, ee_x, ee_y)
    assert view.shape == (side, side, 3)
    assert view.dtype == np.uint8
    # the whole table in view at half scale: about (side / 2)^2 pixels that are not black (an odd pixel
    # offset blends the table's edge into one more row or column)
    assert (side // 2) ** 2 <= int((view.sum(axis=2) > 0).sum()) <= (side // 2 + 1) ** 2
    # the magenta 2 x 2 mark at the end effector lands on the centre pixel (or its upper-left neighbour at
    # the right and bottom edges, where the mark sits one pixel inside the table)
    dark = np.argwhere(view[..., 0].astype(int) - view[..., 1] > 20)
    assert dark.size
    assert np.abs(dark - side // 2).max() <= 1


def test_the_eye_in_hand_view_refuses_other_images():
    for image in (
        np.zeros((64, 64, 3), dtype=np.float32),
        np.zeros((63, 63, 3), np.uint8),
        np.zeros((64, 32, 3), np.uint8),
    ):
        with pytest.raises(ValueError, match="table_view: expected uint8"):
            eye_in_hand_view(image, 0.5, 0.5)
