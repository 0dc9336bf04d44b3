"""helpers.gan_explorer: the GAN lab's data, pictures and widget, driven as a learner would."""

import matplotlib.pyplot as plt
import pytest
import torch
from torch.nn import functional as F

from helpers import gan, gan_explorer


@pytest.mark.parametrize("name", gan_explorer.LAB_DATA)
def test_lab_data_sets_draw_points_with_a_generator(name):
    data, centres, std = gan_explorer.lab_data(name)
    a = data(100, generator=torch.Generator().manual_seed(0))
    b = data(100, generator=torch.Generator().manual_seed(0))
    assert a.shape == (100, 2) and torch.equal(a, b)
    if centres is not None:
        coverage = gan.mode_coverage(data(2000, generator=torch.Generator().manual_seed(1)), centres, std)
        assert coverage["modes_covered"] == len(centres) and coverage["high_quality_fraction"] > 0.95


def test_unknown_lab_data_names_the_choices():
    with pytest.raises(ValueError, match="ring of 8"):
        gan_explorer.lab_data("spiral")


@pytest.mark.parametrize("loss", gan.GAN_LOSSES)
def test_the_arrows_point_where_g_loss_falls(loss):
    model = gan.GAN2D(gan.ring_of_gaussians, loss=loss, seed=0).train(20)
    points, directions = gan_explorer.generator_arrows(model, n=32)
    assert points.shape == directions.shape == (32, 2)
    per_point = {"minimax": lambda s: -F.softplus(s), "non_saturating": lambda s: F.softplus(-s),
                 "wgan-gp": lambda s: -s}[loss]  # G's loss of each point, as gan.generator_loss averages it

    def loss_at(x):
        return per_point(model.D(x))

    with torch.no_grad():
        before = loss_at(points)
        after = loss_at(points + 1e-3 * directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12))
    assert (after <= before + 1e-7).float().mean() > 0.9


@pytest.mark.parametrize("loss", ["non_saturating", "wgan-gp"])
def test_draw_gan_state_draws_both_panels(loss):
    model = gan.GAN2D(gan.ring_of_gaussians, loss=loss, seed=0).train(3)
    fig = gan_explorer.draw_gan_state(model, gan.ring_of_gaussians(200, generator=0))
    axes = fig.axes
    assert "step 3" in axes[0].get_title() and "losses" in axes[1].get_title()
    assert len(axes[1].get_lines()) == (3 if loss == "wgan-gp" else 2)
    labels = [ax.get_ylabel() for ax in axes]
    assert ("critic score" if loss == "wgan-gp" else "D(x) = P(real)") in labels
    plt.close(fig)


def test_the_state_message_counts_modes():
    model = gan.GAN2D(gan.ring_of_gaussians, seed=0)
    assert gan_explorer.gan_state_message(model).startswith("step 0 (non_saturating): press train")
    model.train(5)
    text = gan_explorer.gan_state_message(model, gan.ring_centres(8, 2.0), 0.02)
    assert text.startswith("step 5 (non_saturating): D's loss") and "modes covered" in text and "/8" in text


def test_the_live_figure_redraws_outside_a_notebook():
    model = gan.GAN2D(gan.ring_of_gaussians, seed=0)
    live = gan_explorer.LiveGANFigure(gan.ring_of_gaussians(100, generator=0))
    for _ in range(2):
        model.train(2)
        live.update(model)
    assert "step 4" in live.axes[0].get_title()
    live.close()


def test_the_lab_trains_press_by_press_and_restarts_on_a_new_setting():
    lab = gan_explorer.GANLab(steps=25)
    assert lab.message.startswith("step 0 (non_saturating): press train | modes covered")
    first = lab.model
    lab.press()
    lab.press()
    assert lab.model is first and first.step == 50 and "50" in lab.message and "25 steps in" in lab.message
    lab.controls["steps"].value = 50  # how far the next press goes: the same GAN
    assert lab.model is first
    lab.controls["lr_g"].value = 1e-4  # a setting: a new GAN
    assert lab.model is not first and lab.model.step == 0 and lab.model.lr_g == pytest.approx(1e-4)
    lab.press()
    assert lab.model.step == 50
    lab.reset()
    assert lab.model.step == 0


def test_choosing_a_loss_sets_its_papers_d_steps():
    lab = gan_explorer.GANLab(steps=25)
    lab.controls["loss"].value = "wgan-gp"
    assert lab.controls["d_steps"].value == 5 and lab.model.d_steps == 5 and lab.model.loss == "wgan-gp"
    lab.press()
    assert "wgan-gp" in lab.message and lab.model.step == 25
    lab.controls["loss"].value = "minimax"
    assert lab.controls["d_steps"].value == 1 and lab.model.d_steps == 1


@pytest.mark.parametrize("name", gan_explorer.LAB_DATA)
def test_every_data_set_trains_in_the_lab(name):
    lab = gan_explorer.GANLab(data=name, steps=25)
    lab.press()
    assert lab.message.startswith("step 25") and "⚠" not in lab.message
    assert ("modes covered" in lab.message) == (name in ("ring of 8", "grid of 25"))


def test_extreme_settings_give_a_message_not_a_traceback():
    lab = gan_explorer.GANLab(steps=25)
    lab.controls["lr_d"].value = 10.0
    assert lab.message.startswith("⚠ lr_d must be a number in (0, 1]")
    lab.press()  # still a message
    assert lab.message.startswith("⚠ lr_d")
    lab.controls["lr_d"].value = 1e-3
    lab.controls["d_steps"].value = 0
    assert lab.message.startswith("⚠ 0 D steps per G step")
    lab.controls["d_steps"].value = 1
    lab.controls["steps"].value = 0
    lab.press()
    assert "0 steps per press: nothing trained" in lab.message and lab.model.step == 0


def test_a_diverged_run_is_reported(monkeypatch):
    lab = gan_explorer.GANLab(steps=25)

    def diverge(num_steps):
        raise gan.GANDivergenceError("training diverged at step 1: lower the learning rate")

    monkeypatch.setattr(lab.model, "train", diverge)
    lab.press()
    assert lab.message.startswith("⚠ training diverged at step 1")


def test_unknown_lab_controls_are_rejected():
    with pytest.raises(TypeError, match="no control 'epochs'"):
        gan_explorer.GANLab(epochs=3)
