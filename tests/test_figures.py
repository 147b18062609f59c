"""The app's figure builders: pure functions, checked on the data they put into each figure."""
import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageColor

from pasm.report import to_uint8
from ui import atlas_figures, attack_figures, figures, run_figures


def decode(trace):
    """The pixels behind an image trace's PNG data URI."""
    payload = trace.source.split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def image_traces(fig):
    return [t for t in fig.data if t.type == "image"]


def test_to_uint8_takes_tensors_grey_and_float_arrays():
    tensor = torch.zeros(3, 4, 5)
    tensor[0] = 1.0
    rgb = to_uint8(tensor)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 255).all() and (rgb[..., 1:] == 0).all()

    grey = to_uint8(torch.full((1, 2, 2), 0.5))
    assert grey.shape == (2, 2, 3) and (grey == 128).all()

    clipped = to_uint8(np.array([[-1.0, 2.0]]))
    assert clipped[0, 0].tolist() == [0, 0, 0] and clipped[0, 1].tolist() == [255, 255, 255]


def test_image_trace_puts_pixel_centres_at_half_pixels_even_when_shrunk():
    small = figures.image_trace(np.zeros((10, 20, 3), np.uint8))
    assert (small.x0, small.y0, small.dx, small.dy) == (0.5, 0.5, 1.0, 1.0)
    assert decode(small).shape == (10, 20, 3)

    big = figures.image_trace(np.zeros((100, 400, 3), np.uint8), max_side=200)
    assert decode(big).shape == (50, 200, 3)
    # Shown at half size, the trace still spans the photo's own 400 x 100 pixel coordinates.
    assert big.dx == pytest.approx(2.0) and big.x0 == pytest.approx(1.0)
    assert big.x0 - big.dx / 2 + 200 * big.dx == pytest.approx(400.0)


def test_photos_travel_as_jpeg_and_crops_as_exact_png():
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert figures.data_uri(crop).startswith("data:image/png;base64,")
    assert (decode(figures.image_trace(crop)) == crop).all()
    assert figures.data_uri(np.zeros((300, 200, 3), np.uint8)).startswith("data:image/jpeg;base64,")


def test_tinted_changes_only_the_masked_pixels():
    image = np.full((6, 6, 3), 100, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:3, 2:5] = True
    out = figures.tinted(image, mask)
    assert (out[~mask] == 100).all()
    assert (out[mask] != 100).any(axis=-1).all()


def test_photo_faces_boxes_every_face_and_highlights_the_chosen_one():
    boxes = [(10, 20, 50, 70), (60, 5, 90, 40)]
    fig = attack_figures.photo_faces(np.zeros((100, 120, 3), np.uint8), boxes, [0.9, 0.6], chosen=1)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.y0, r.x1, r.y1) for r in rects] == [tuple(map(float, b)) for b in boxes]
    assert rects[1].line.color == attack_figures.CHOSEN_COLOUR and rects[0].line.color != attack_figures.CHOSEN_COLOUR
    assert [a.text for a in fig.layout.annotations] == ["face 1 (0.90)", "face 2 (0.60)"]


def test_prediction_bars_has_one_trace_per_model_with_its_probabilities():
    fig = attack_figures.prediction_bars({"teacher": {"a": 0.7, "b": 0.3}, "student": {"a": 0.4, "b": 0.6}})
    assert [t.name for t in fig.data] == ["teacher", "student"]
    assert list(fig.data[1].x) == [0.4, 0.6] and list(fig.data[1].y) == ["a", "b"]


def test_attack_points_numbers_points_and_tells_the_prediction_after_each():
    classes = ["happy", "sad"]
    trajectory = [[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]]
    fig = attack_figures.attack_points(np.zeros((8, 8, 3), np.uint8), [[1, 2], [5, 6]], [0.25, 0.125], trajectory,
                                       classes)
    points = [t for t in fig.data if t.type == "scatter"][0]
    assert list(points.x) == [1.5, 5.5] and list(points.y) == [2.5, 6.5]
    assert list(points.text) == ["1", "2"] and list(points.marker.color) == [1, 2], "numbered and coloured in order"
    assert "after it: happy (0.70)" in points.hovertext[0]
    assert "after it: sad (0.60)" in points.hovertext[1]
    assert "gradient score 0.125" in points.hovertext[1]


def test_attack_points_without_points_is_just_the_face():
    fig = attack_figures.attack_points(np.zeros((8, 8, 3), np.uint8), [], [], [[0.5, 0.5]], ["a", "b"])
    assert [t.type for t in fig.data] == ["image"]


def test_trajectory_draws_every_class_and_the_attacked_one_bold():
    fig = attack_figures.trajectory([[0.8, 0.1, 0.1], [0.5, 0.4, 0.1]], ["a", "b", "c"], attacked=0)
    assert [t.name for t in fig.data] == ["a", "b", "c"]
    assert list(fig.data[1].x) == [0, 1] and list(fig.data[1].y) == [0.1, 0.4]
    assert fig.data[0].line.width > fig.data[1].line.width


def png_pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def shrunk(tile, scale):
    """An enlarged tile back at one value per source pixel (the top-left of each block)."""
    return tile[::scale, ::scale]


def test_enlarged_keeps_every_pixel_a_sharp_square():
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    big, scale = figures.enlarged(crop)
    assert scale == 4 and big.shape == (256, 256, 3)
    assert (shrunk(big, scale) == crop).all() and (big[4:8, 8:12] == crop[1, 2]).all()
    assert figures.enlarged(np.zeros((48, 48, 3), np.uint8))[1] == 6, "whole factors only, at least the side"
    assert figures.enlarged(np.zeros((400, 300, 3), np.uint8))[1] == 1
    assert (png_pixels(figures.png_bytes(crop)) == crop).all(), "PNG: exact pixels"


def test_heat_overlay_follows_plotly_inferno_from_zero_to_the_maximum():
    lookup = figures.colour_lookup("Inferno")
    assert lookup[0].tolist() == [0, 0, 4] and lookup[-1].tolist() == [252, 255, 164], "plotly's end colours"
    values = np.array([[0.0, 0.5], [1.0, 2.0]])
    face = np.full((2, 2, 3), 100, np.uint8)
    out = figures.heat_overlay(face, values, opacity=0.5)
    assert out[1, 1].tolist() == np.round(50 + 0.5 * lookup[-1]).tolist(), "the maximum is the top of the scale"
    assert out[0, 0].tolist() == np.round(50 + 0.5 * lookup[0]).tolist()
    assert (figures.heat_overlay(face, values, zmax=4.0, opacity=0.5)[1, 1] != out[1, 1]).any()


def test_region_images_show_the_box_the_points_and_both_faces():
    crop = np.zeros((16, 16, 3), np.uint8)
    erased = np.full((16, 16, 3), 200, np.uint8)
    located, after = attack_figures.region_images(crop, [2, 3, 9, 10], erased, [[12, 13]])
    located, after = png_pixels(located), png_pixels(after)
    scale = located.shape[0] // 16
    assert located.shape == after.shape == (16 * scale, 16 * scale, 3)
    assert (after == 200).all()
    box = np.all(located == ImageColor.getrgb(figures.REGION_COLOUR), axis=-1)
    rows, cols = np.nonzero(box)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (2 * scale, 3 * scale, 9 * scale, 10 * scale), \
        "the box's outer edge is the region's pixel edges"
    assert not box[4 * scale:9 * scale, 3 * scale:8 * scale].any(), "an outline, the face shows inside"
    centre = located[int(13.5 * scale), int(12.5 * scale)]
    assert centre.tolist() == [255, 255, 255], "the point sits on its pixel's centre"


def test_region_images_draw_no_box_for_an_empty_region():
    face = np.zeros((8, 8, 3), np.uint8)
    located, _ = attack_figures.region_images(face, [0, 0, 0, 0], face)
    assert not np.all(png_pixels(located) == ImageColor.getrgb(figures.REGION_COLOUR), axis=-1).any()


def test_comparison_images_put_masks_over_erased_faces_per_method():
    crop = np.full((8, 8, 3), 90, np.uint8)
    masks, erased = {}, {}
    for i, name in enumerate(["pasm", "random", "attention"]):
        masks[name] = np.zeros((8, 8), bool)
        masks[name][i:i + 2, i:i + 2] = True
        erased[name] = np.full((8, 8, 3), 10 * i, np.uint8)
    images = attack_figures.comparison_images(crop, masks, erased)
    assert len(images["masks"]) == len(images["erased"]) == 3
    for i, name in enumerate(masks):
        top, bottom = png_pixels(images["masks"][i]), png_pixels(images["erased"][i])
        scale = top.shape[0] // 8
        assert ((shrunk(top, scale) != 90).any(axis=-1) == masks[name]).all()
        assert (bottom == 10 * i).all() and bottom.shape == top.shape


def test_attribution_images_overlay_each_map_on_the_face_pixel_for_pixel():
    maps = {"Grad-CAM": np.eye(4), "saliency": np.ones((4, 4)) * 0.5}
    crop = np.zeros((4, 4, 3), np.uint8)
    images = attack_figures.attribution_images(crop, maps)
    assert len(images) == 2
    for data, values in zip(images, maps.values()):
        tile = png_pixels(data)
        scale = tile.shape[0] // 4
        assert (shrunk(tile, scale) == figures.heat_overlay(crop, values)).all()
    tile = png_pixels(images[0])
    gradcam = shrunk(tile, tile.shape[0] // 4)
    assert gradcam[1, 1].sum() > gradcam[1, 2].sum(), "the diagonal is hot"


def test_region_counts_keeps_the_given_order_and_empty_regions():
    fig = attack_figures.region_counts(["mouth", "eyes", "mouth"], ["eyes", "nose", "mouth"])
    bar = fig.data[0]
    assert list(bar.x) == ["eyes", "nose", "mouth"] and list(bar.y) == [1, 0, 2]
    assert list(bar.text) == ["33%", "", "67%"]


def test_class_density_maps_share_one_colour_scale():
    densities = {"a": np.full((4, 4), 0.1), "b": np.full((4, 4), 0.4), "c": np.zeros((4, 4))}
    fig = atlas_figures.class_density_maps(densities, cols=2)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3
    assert {h.zmax for h in heatmaps} == {0.4}
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]


def test_density_map_with_and_without_a_backdrop():
    density = np.random.default_rng(0).random((5, 5))
    alone = atlas_figures.density_map(density)
    over = atlas_figures.density_map(density, background=np.zeros((5, 5, 3), np.uint8))
    assert [t.type for t in alone.data] == ["heatmap"]
    assert [t.type for t in over.data] == ["image", "heatmap"]
    assert "rgba" in over.data[1].colorscale[0][1] and over.data[1].colorscale[0][1].endswith(", 0)"), \
        "no points: the face shows through"


def test_region_shares_stacks_one_trace_per_region():
    shares = {"happy": {"mouth": 0.75, "eyes": 0.25}, "sad": {"brows": 1.0}}
    fig = atlas_figures.region_shares(shares, ["brows", "eyes", "mouth"])
    assert fig.layout.barmode == "stack"
    by_region = {t.name: list(t.y) for t in fig.data}
    assert by_region == {"brows": [0.0, 1.0], "eyes": [0.25, 0.0], "mouth": [0.75, 0.0]}


def test_pasm_loop_has_each_step_and_an_arrow_to_the_next():
    fig = figures.pasm_loop()
    boxes = [a for a in fig.layout.annotations if a.text]
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    assert len(boxes) == len(figures.LOOP_STEPS) == len(arrows)
    assert "Point attack" in boxes[1].text
    for i, arrow in enumerate(arrows):
        start, end = boxes[i], boxes[(i + 1) % len(boxes)]
        assert (arrow.ax, arrow.ay) == (start.x, start.y) and (arrow.x, arrow.y) == (end.x, end.y)
        assert arrow.standoff > 0 and arrow.startstandoff > 0, "arrows stop at the box edges"
    assert (arrows[-1].x, arrows[-1].y) == (boxes[0].x, boxes[0].y), "the last step leads back to the first"


def test_comparison_png_lays_out_masks_over_erased_faces():
    crop = np.full((8, 8, 3), 50, np.uint8)
    masks = {"pasm": np.ones((8, 8), bool), "random": np.zeros((8, 8), bool)}
    erased = {"pasm": np.full((8, 8, 3), 200, np.uint8), "random": np.full((8, 8, 3), 50, np.uint8)}
    png = attack_figures.comparison_png(crop, masks, erased, scale=4)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    size, gap, text = 32, 8, 34
    assert sheet.shape == (2 * (size + text + gap) + gap, 2 * (size + gap) + gap, 3)
    erased_tile = sheet[2 * gap + size + 2 * text: 2 * gap + 2 * size + 2 * text, gap: gap + size]
    assert (erased_tile == 200).all()
    random_mask_tile = sheet[gap + text: gap + text + size, 2 * gap + size: 2 * gap + 2 * size]
    assert (random_mask_tile == 50).all()


# Labels and legibility: what a person reads in the legend and above each panel


RAW_METRIC_KEYS = ("test_accuracy", "mean_class_accuracy", "occluded_accuracy", "wild_accuracy", "train_accuracy",
                   "erased_fraction", "test_wild accuracy")


def test_generation_curves_name_metrics_for_people_and_keep_equal_lines_apart():
    # A balanced test set: accuracy and mean class accuracy are the same numbers, so the lines coincide.
    generations = [{"index": g, "test_accuracy": 0.5 + g / 10, "mean_class_accuracy": 0.5 + g / 10,
                    "occluded_accuracy": 0.3, "wild_accuracy": 0.2} for g in range(3)]
    fig = run_figures.generation_curves(generations)
    names = [t.name for t in fig.data]
    assert names == ["accuracy, clean test", "mean class accuracy, clean test", "accuracy, synthetic occluders",
                     "accuracy, occluded test (test_wild)"]
    assert not any(name in RAW_METRIC_KEYS or "_accuracy" in name for name in names), names
    dashes = [t.line.dash or "solid" for t in fig.data]
    assert len(set(dashes)) == len(dashes), dashes
    assert len({t.marker.symbol for t in fig.data}) == len(fig.data)
    accuracy, mean_class = fig.data[0], fig.data[1]
    assert accuracy.line.width > mean_class.line.width and mean_class.line.dash, \
        "the line drawn first is wider and the one over it broken, so both show where they coincide"


def test_training_curves_name_metrics_for_people_and_keep_equal_lines_apart():
    # Without distillation the loss is the cross-entropy: two identical lines.
    records = [{"kind": "epoch", "generation": 0, "epoch": e, "loss": 1.0 / e, "ce": 1.0 / e, "kd": 0.0,
                "train_accuracy": 0.5, "erased_fraction": 0.5, "lr": 0.1, "seconds": 1.0} for e in (1, 2)]
    fig = run_figures.training_curves(records)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"loss", "cross-entropy", "distillation (KD)", "train accuracy", "erased fraction"}
    assert not any(name in RAW_METRIC_KEYS or "_" in name for name in traces)
    assert traces["loss"].line.width > traces["cross-entropy"].line.width and traces["cross-entropy"].line.dash
    assert (traces["train accuracy"].line.dash or "solid") != (traces["erased fraction"].line.dash or "solid")
    assert "_" not in traces["cross-entropy"].hovertemplate.split("<br>")[0]


def tiny_generation_results(faces, generations):
    crop = np.zeros((8, 8, 3), np.uint8)
    report = {"prediction": {"label": "happiness", "probs": {"happiness": 0.9}}, "points_crop": [[1, 2]]}
    return [{"index": g, "crops": [crop] * faces, "reports": [report] * faces, "boxes": [[0, 0, 4, 4]] * faces,
             "mask_iou": None, "box_iou": None} for g in range(generations)]


def subplot_figures():
    return {
        "class_density_maps": atlas_figures.class_density_maps({"a": np.eye(4), "b": np.eye(4)}),
        "generation_faces": attack_figures.generation_faces(tiny_generation_results(3, 4), ["happiness"] * 3),
        "training_curves": run_figures.training_curves([{"kind": "epoch", "generation": 0, "loss": 1.0}]),
    }


@pytest.mark.parametrize("name", list(subplot_figures()))
def test_subplot_titles_are_readable(name):
    fig = subplot_figures()[name]
    sizes = [a.font.size for a in fig.layout.annotations]
    assert sizes and all(size is not None and size >= 14 for size in sizes), (name, sizes)


def test_generation_faces_titles_fit_between_the_rows():
    fig = attack_figures.generation_faces(tiny_generation_results(3, 4), ["happiness"] * 3)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "gen 0: happiness 0.90<br>true: happiness", "the true class on its own line"
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    top_of_row_2 = fig.layout.yaxis5.domain[1]  # row 2, column 1 (4 columns)
    bottom_of_row_1 = fig.layout.yaxis.domain[0]
    gap = (bottom_of_row_1 - top_of_row_2) * plot_height
    assert gap >= 2 * figures.SUBPLOT_TITLE_SIZE * 1.2, f"two title lines need room between rows, got {gap:.0f} px"
    assert fig.layout.margin.t >= 2 * figures.SUBPLOT_TITLE_SIZE * 1.2 + 40, "and the top row under the figure title"
