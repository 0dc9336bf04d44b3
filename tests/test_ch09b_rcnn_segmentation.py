"""Chapter 9b's code, imported from the notebook, against torchvision.ops and helpers."""

import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from helpers import boxes, segmentation
from notebook_code import load_notebook

ch = load_notebook("09b_rcnn_segmentation")


def random_rois(num_rois, num_images, image_size, seed):
    """Regions [b, x1, y1, x2, y2] in image coordinates: inside, across and outside the image (negative
    corners too), a tenth of them points, a tenth with x2 slightly left of x1, half with integer corners
    (which land on exact halves for scales 0.1 and 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(num_rois, 2, generator=gen) * 1.6 * image_size - 0.3 * image_size
    side = torch.rand(num_rois, 2, generator=gen) * 0.8 * image_size
    side[: num_rois // 10] = 0
    side[num_rois // 10 : num_rois // 5, 0] *= -0.1
    index = torch.randint(num_images, (num_rois, 1), generator=gen).float()
    rois = torch.cat((index, corner, corner + side), dim=1)
    rois[num_rois // 2 :, 1:] = rois[num_rois // 2 :, 1:].round()
    return rois


FEATURES = torch.randn(3, 4, 12, 16, generator=torch.Generator().manual_seed(0))
ROIS = random_rois(1200, 3, 64, seed=1)


def test_roi_pool_golden_example_of_d2l():
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32)
    expected = torch.tensor([[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]])
    assert torch.equal(ch.roi_pool(X, rois, (2, 2), 0.1), expected)
    assert torch.equal(ch.roi_pool(X, rois, 2, 0.1), expected)  # an int output size means (n, n)


def test_round_half_away_from_zero_as_c():
    x = torch.tensor([-2.5, -1.5, -0.5, -0.4, 0.4, 0.5, 1.5, 2.5, 3.7])
    assert ch.round_half_away(x).tolist() == [-3, -2, -1, 0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("output_size, scale", [((2, 2), 0.25), ((3, 5), 0.1), ((7, 7), 0.5), ((1, 4), 1.0)])
def test_roi_pool_equals_torchvision_and_helper(output_size, scale):
    rois = ROIS if output_size != (7, 7) else ROIS[::2]  # 7 x 7 bins loop longest
    ours = ch.roi_pool(FEATURES, rois, output_size, scale)
    assert torch.allclose(ours, torchvision.ops.roi_pool(FEATURES, rois, output_size, scale), atol=1e-5)
    assert torch.allclose(ours, boxes.roi_pool(FEATURES, rois, output_size, scale), atol=1e-5)


def test_roi_pool_on_halves_of_negative_and_positive_corners():
    # Every corner at a multiple of 5 with scale 0.1: every scaled corner an exact half, many negative.
    values = torch.tensor([-25.0, -15, -5, 5, 15, 25, 35, 45, 95, 115])
    columns = torch.meshgrid(torch.tensor([0.0, 1.0]), values, values[:5], values, values[3:], indexing="ij")
    grid = torch.stack(columns, dim=-1).reshape(-1, 5)
    features = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    ours = ch.roi_pool(features, grid, (3, 3), 0.1)
    assert torch.equal(ours, torchvision.ops.roi_pool(features, grid, (3, 3), 0.1))
    assert len(grid) >= 1000


def test_roi_pool_of_a_region_outside_the_map_is_zero():
    features = torch.rand(1, 2, 4, 4) + 1
    out = ch.roi_pool(features, torch.tensor([[0.0, 50, 50, 60, 60]]), (2, 2))
    assert torch.equal(out, torch.zeros(1, 2, 2, 2))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 4])
def test_roi_align_equals_torchvision_and_helper(aligned, sampling_ratio):
    rois = ROIS
    if aligned and sampling_ratio <= 0:  # torchvision's kernel fails on x2 < x1 here (ours and the helper: 0)
        rois = rois[(rois[:, 3] >= rois[:, 1]) & (rois[:, 4] >= rois[:, 2])]
    assert len(rois) >= 1000
    for output_size, scale in (((2, 3), 0.25), (7, 0.1)):
        ours = ch.roi_align(FEATURES, rois, output_size, scale, sampling_ratio, aligned)
        theirs = torchvision.ops.roi_align(FEATURES, rois, output_size, scale, sampling_ratio, aligned)
        assert torch.allclose(ours, theirs, atol=1e-5)
        helper = boxes.roi_align(FEATURES, rois, output_size, scale, sampling_ratio, aligned)
        assert torch.allclose(ours, helper, atol=1e-5)


def test_roi_align_reversed_box_under_aligned_adaptive_gives_zero_like_the_helper():
    rois = torch.tensor([[0.0, 30, 10, 20, 40]])  # x2 < x1
    ours = ch.roi_align(FEATURES, rois, 2, 0.25, -1, True)
    assert torch.equal(ours, torch.zeros(1, 4, 2, 2))
    assert torch.equal(ours, boxes.roi_align(FEATURES, rois, 2, 0.25, -1, True))


def test_aligned_true_reads_pixel_centres():
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # value = column index
    region = torch.tensor([[0.0, 2.0, 2.0, 4.0, 4.0]])  # covers pixels 2 and 3
    assert ch.roi_align(ramp, region, 1, sampling_ratio=4, aligned=True).item() == pytest.approx(2.5)
    assert ch.roi_align(ramp, region, 1, sampling_ratio=4, aligned=False).item() == pytest.approx(3.0)


def test_roi_align_of_the_whole_map_is_bilinear_resizing():
    grid_map = torch.rand(1, 2, 9, 12, generator=torch.Generator().manual_seed(3))
    whole = torch.tensor([[0.0, 0.0, 0.0, 12.0, 9.0]])
    for size in ((4, 5), (20, 30)):
        resized = F.interpolate(grid_map, size=size, mode="bilinear", align_corners=False)
        ours = ch.roi_align(grid_map, whole, size, sampling_ratio=1, aligned=True)
        assert torch.allclose(ours, resized, atol=1e-5)


def test_bilinear_interpolate_matches_grid_sample_inside_the_map():
    feature_map = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(4))
    y = torch.rand(20, generator=torch.Generator().manual_seed(5)) * 4
    x = torch.rand(20, generator=torch.Generator().manual_seed(6)) * 6
    # grid_sample with align_corners=True puts -1 and 1 on the centres of the first and last pixels
    grid = torch.stack((x / 6 * 2 - 1, y / 4 * 2 - 1), dim=-1)[None, None]
    expected = F.grid_sample(feature_map[None], grid, mode="bilinear", align_corners=True)[0, :, 0]
    assert torch.allclose(ch.bilinear_interpolate(feature_map, y, x), expected, atol=1e-5)


def test_rpn_head_equals_torchvision():
    torch.manual_seed(0)
    theirs = torchvision.models.detection.rpn.RPNHead(8, 3)
    ours = ch.RPNHead(8, 3)
    with torch.no_grad():
        ours.conv.weight.copy_(theirs.conv[0][0].weight)
        ours.conv.bias.copy_(theirs.conv[0][0].bias)
        ours.cls_logits.load_state_dict(theirs.cls_logits.state_dict())
        ours.bbox_pred.load_state_dict(theirs.bbox_pred.state_dict())
    X = torch.randn(2, 8, 5, 6)
    (logits,), (offsets,) = theirs([X])
    ours_logits, ours_offsets = ours(X)
    assert torch.allclose(ours_logits, logits, atol=1e-6) and torch.allclose(ours_offsets, offsets, atol=1e-6)


def test_faster_rcnn_anchors_rpn_labels_and_proposals():
    anchors = ch.faster_rcnn_anchors(4, 4, [0.25, 0.5], [0.5, 1, 2])
    assert anchors.shape == (4 * 4 * 6, 4)
    per_position = anchors.reshape(4, 4, 6, 4)[1, 2]
    centres = (per_position[:, :2] + per_position[:, 2:]) / 2
    assert torch.allclose(centres, torch.tensor([2.5 / 4, 1.5 / 4]).expand(6, 2))
    gt = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.55, 0.5, 0.95, 0.9]])
    labels = ch.rpn_labels(anchors, gt)
    iou = boxes.box_iou(anchors, gt)
    assert (labels[iou.argmax(dim=0)] == 1).all()  # every box has a positive anchor
    assert (labels[iou.max(dim=1).values >= 0.7] == 1).all()
    best = iou.max(dim=1).values
    assert ((labels == 0) == ((best < 0.3) & (labels != 1))).all()
    proposals, scores = ch.propose(anchors, best, torch.zeros(len(anchors), 4), 20, 0.7, 5)
    assert len(proposals) <= 5 and (scores[:-1] >= scores[1:]).all()
    assert boxes.box_iou(proposals, proposals).fill_diagonal_(0).max() <= 0.7


def test_bilinear_kernel_and_fcn_equal_the_helpers():
    for s in (2, 4, 8):
        assert torch.equal(ch.bilinear_kernel(3, 3, 2 * s), segmentation.bilinear_kernel(3, 3, 2 * s))
    assert torch.equal(ch.bilinear_kernel(1, 1, 3)[0, 0], segmentation.bilinear_kernel(1, 1, 3)[0, 0])
    torch.manual_seed(0)
    ours = ch.FCN(4, channels=(8, 16), convs_per_stage=2).eval()
    helper = segmentation.FCN(4, channels=(8, 16), convs_per_stage=2).eval()
    helper.load_state_dict(ours.state_dict())
    X = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert ours(X).shape == (2, 4, 32, 32)
        assert torch.allclose(ours(X), helper(X), atol=1e-5)
    defaults, helper_defaults = ch.FCN(4).state_dict(), segmentation.FCN(4).state_dict()
    assert {k: v.shape for k, v in defaults.items()} == {k: v.shape for k, v in helper_defaults.items()}


def test_bilinear_transposed_convolution_equals_interpolate_inside():
    X = torch.rand(1, 2, 6, 7, generator=torch.Generator().manual_seed(7))
    up = nn.ConvTranspose2d(2, 2, 8, stride=4, padding=2, bias=False)
    with torch.no_grad():
        up.weight.copy_(ch.bilinear_kernel(2, 2, 8))
        ours = up(X)
    expected = F.interpolate(X, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(ours[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-5)


def test_stand_in_proposals_and_warp_crops():
    gt = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    proposals = ch.stand_in_proposals(gt, 12, 128, torch.Generator().manual_seed(0))
    assert proposals.shape == (12, 4)
    assert (proposals[:, 2:] >= proposals[:, :2]).all() and proposals.min() >= 0 and proposals.max() <= 128
    crops = ch.warp_crops(torch.rand(3, 128, 128), proposals, 32)
    assert crops.shape == (12, 3, 32, 32)


def test_shift_response_pool_jumps_align_is_smooth():
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    bump = torch.exp(-((rows - 7.5) ** 2 + (cols - 9.0) ** 2) / 18)[None, None]
    shifts = torch.linspace(0, 3, 31)
    pooled, aligned = ch.shift_response(bump, torch.tensor([3.0, 4.0, 9.0, 11.0]), shifts, (2, 2))
    assert pooled.shape == aligned.shape == (31, 1, 2, 2)
    assert len(pooled[:, 0, 0, 0].unique()) < 8 < len(aligned[:, 0, 0, 0].unique())
    assert aligned[:, 0, 0, 0].diff().abs().max() < 0.05


def test_roi_explorer_draws_and_summarises():
    feature_map = (torch.arange(80.0).reshape(8, 10) * 37 % 50).round()
    for method in ch.ROI_METHODS:
        fig, message = ch.draw_roi_explorer(5.2, 2.4, 25.6, 18.8, 2, 0.25, method, 0, feature_map)
        assert isinstance(fig, plt.Figure)
        assert message.startswith(method) and "output min" in message
        plt.close(fig)
    _, message = ch.draw_roi_explorer(5.2, 2.4, 25.6, 18.8, 2, 0.25, "pool", 0, feature_map)
    expected = ch.roi_pool(feature_map[None, None], torch.tensor([[0.0, 5.2, 2.4, 25.6, 18.8]]), 2, 0.25)
    assert f"max {expected.max():.2f}" in message and "rounded to pixels 1..6 x 1..5" in message
    fig, message = ch.draw_roi_explorer(5.2, 2.4, 25.6, 18.8, 3, 0.25, "align", 2, feature_map)
    assert "2 x 2 samples per bin" in message
    plt.close(fig)
    fig, message = ch.draw_roi_explorer(40, 30, 48, 40, 2, 1.0, "pool", 0, feature_map)  # off the map: zeros
    assert "max 0.00" in message
    plt.close(fig)


def test_roi_explorer_refuses_reversed_boxes_and_unknown_methods():
    feature_map = torch.rand(8, 10)
    with pytest.raises(ValueError, match="x1 <= x2"):
        ch.draw_roi_explorer(20, 2, 10, 18, 2, 0.25, "pool", 0, feature_map)
    with pytest.raises(ValueError, match="x1 <= x2 and y1 <= y2"):
        ch.draw_roi_explorer(2, 20, 10, 18, 2, 0.25, "align", 0, feature_map)
    with pytest.raises(ValueError, match="method must be one of"):
        ch.draw_roi_explorer(2, 2, 10, 18, 2, 0.25, "max", 0, feature_map)


def test_roi_explorer_widget_turns_a_reversed_box_into_a_warning():
    from functools import partial

    import ipywidgets as w

    from helpers import widgets

    feature_map = torch.rand(8, 10)
    explorer = widgets.PlotExplorer(
        {"x1": w.FloatSlider(value=4, min=0, max=40), "y1": w.FloatSlider(value=4, min=0, max=40),
         "x2": w.FloatSlider(value=20, min=0, max=40), "y2": w.FloatSlider(value=20, min=0, max=40),
         "output_size": w.IntSlider(value=2, min=1, max=5),
         "spatial_scale": w.Dropdown(options=[0.25, 0.5], value=0.25),
         "method": w.Dropdown(options=ch.ROI_METHODS, value="pool"),
         "sampling_ratio": w.IntSlider(value=0, min=0, max=4)},
        partial(ch.draw_roi_explorer, feature_map=feature_map))
    assert explorer.message.startswith("pool")
    explorer.controls["x2"].value = 2
    assert "x1 <= x2" in explorer.message
    explorer.controls["x2"].value = 30
    explorer.controls["method"].value = "align (aligned=True)"
    assert explorer.message.startswith("align (aligned=True)")
    plt.close("all")


def test_fcn_prediction_widget_function():
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[0, 2:8, 2:8] = 2  # a disc
    predictions = masks.clone()
    predictions[0, 2:8, 6:10] = 2  # 12 false alarms, no miss: IoU 36 / 48
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    fig, message = ch.draw_fcn_prediction(0, "disc", images, masks, predictions)
    assert isinstance(fig, plt.Figure) and f"IoU {36 / 48:.3f}" in message and "12 false alarms" in message
    plt.close(fig)
    fig, message = ch.draw_fcn_prediction(1, "banana", images, masks, predictions)
    assert "IoU undefined" in message
    plt.close(fig)
    with pytest.raises(ValueError, match="class_name"):
        ch.draw_fcn_prediction(0, "cat", images, masks, predictions)


def test_near_outline_marks_a_band_around_each_region():
    masks = torch.zeros(1, 12, 12, dtype=torch.uint8)
    masks[0, 4:8, 4:8] = 3
    band = ch.near_outline(masks, width=1)
    assert band[0, 3:9, 3:9].sum() == 6 * 6 - 2 * 2 == band.sum()  # a ring 2 pixels wide around the edge
    assert not band[0, 5:7, 5:7].any()  # hollow inside
    assert not ch.near_outline(torch.zeros(2, 5, 5, dtype=torch.long), width=2).any()


def test_three_tasks_figure_from_generated_shapes():
    from helpers import detection

    images, targets, masks, instances = detection.generate_shapes(ch.shapes_textures(), 1, seed=0, stream=7,
                                                                  return_instances=True)
    fig = ch.draw_three_tasks(images[0], targets[0], masks[0], instances[0], detection.SHAPE_CLASSES)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 3
    plt.close(fig)
