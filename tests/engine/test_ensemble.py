"""The AutoAttack components and cascade decide like torchattacks' (a reference implementation), image for image.

Same tiny model, images and seed; budgets shrunk to keep the tests fast (the engine's defaults are
the original 100 steps, 9 targets and 5,000 queries). Each test compares which images an attack
breaks, exactly. The adversarial images themselves are not compared: our attacks stop working on an
image at its first break (torchattacks' APGD keeps the last one) and return the highest-loss iterate
of an image they could not break (torchattacks returns the clean image). torchattacks draws its
random starts from the global RNG after torch.manual_seed(seed), ours from a generator seeded alike;
with the same images standing in the same order the draws coincide. Legitimate differences:
torchattacks.AutoAttack runs APGD and FAB at 10 steps (its classes' defaults) where the original
runs 100, so `test_cascade_equals_torchattacks_autoattack_at_its_budgets` sets ours to 10.
"""
from __future__ import annotations

import pytest
import torch

from engine.apgd import apgd, apgd_targeted, dlr_loss, targeted_dlr_loss
from engine.ensemble import ATTACK_NAMES, EnsembleSettings, attack_layout, autoattack
from engine.fab import fab_targeted, project_linf
from engine.square import square
from tinycnn import digits, model, trained_demo_cnn  # noqa: F401  (fixture)

torchattacks = pytest.importorskip("torchattacks")
EPS = 0.08


def held_out_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random n of the test split (which is ordered by class)."""
    _, _, x, y = digits()
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
    return x[keep], y[keep]


@pytest.fixture(scope="module")
def batch(model):
    """32 test digits the tiny model classifies correctly (the attacks' inputs inside AutoAttack)."""
    x, y = held_out_digits(40)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return x[keep][:32], y[keep][:32]


def broken_by_torchattacks(model, attack, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(attack(x, y)).argmax(1) != y


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_breaks_the_images_torchattacks_breaks(model, batch, loss):
    x, y = batch
    adv, fooled = apgd(model, x, y, EPS, steps=10, loss=loss, generator=generator())
    theirs = broken_by_torchattacks(model, torchattacks.APGD(model, eps=EPS, steps=10, loss=loss, seed=0), x, y)
    assert 0 < int(fooled.sum()) < len(x)
    assert torch.equal(fooled, theirs)
    assert (adv - x).abs().max() <= EPS + 1e-6 and torch.equal(model(adv[fooled]).argmax(1) != y[fooled], fooled[fooled])


def test_apgd_targeted_breaks_the_images_torchattacks_breaks(model, batch):
    x, y = batch
    _, fooled = apgd_targeted(model, x, y, EPS, steps=5, targets=9, generator=generator())
    theirs = broken_by_torchattacks(model, torchattacks.APGDT(model, eps=EPS, steps=5, n_classes=10, seed=0), x, y)
    assert 0 < int(fooled.sum()) < len(x)
    assert torch.equal(fooled, theirs)


def test_fab_targeted_breaks_the_images_torchattacks_breaks(model, batch):
    x, y = batch
    _, fooled = fab_targeted(model, x, y, EPS, steps=5, targets=9)
    theirs = broken_by_torchattacks(model, torchattacks.FAB(model, eps=EPS, steps=5, multi_targeted=True, n_classes=10), x, y)
    assert 0 < int(fooled.sum()) < len(x)
    assert torch.equal(fooled, theirs)


def test_square_breaks_the_images_torchattacks_breaks(model, batch):
    x, y = batch
    adv, fooled = square(model, x, y, EPS, queries=100, generator=generator())
    theirs = broken_by_torchattacks(model, torchattacks.Square(model, eps=EPS, n_queries=100, seed=0), x, y)
    assert 0 < int(fooled.sum()) < len(x)
    assert torch.equal(fooled, theirs)
    assert (adv - x).abs().max() <= EPS + 1e-6


def test_dlr_losses_are_scale_invariant_and_signed():
    logits = torch.tensor([[3.0, 1.0, 0.5, -1.0, 0.0], [0.0, 2.0, 1.0, -2.0, 0.5]])
    y, t = torch.tensor([0, 0]), torch.tensor([1, 1])
    assert torch.allclose(dlr_loss(1000 * logits, y), dlr_loss(logits, y))
    assert dlr_loss(logits, y)[0] < 0 < dlr_loss(logits, y)[1]  # correct vs misclassified
    assert torch.allclose(targeted_dlr_loss(1000 * logits, y, t), targeted_dlr_loss(logits, y, t))


def test_linf_projection_reaches_the_hyperplane_inside_the_box_with_least_distortion():
    g = generator(3)
    p, w = torch.rand(64, 30, generator=g), torch.randn(64, 30, generator=g)
    b = (w * torch.rand(64, 30, generator=g)).sum(1)  # a point of the box lies on each hyperplane
    d = project_linf(p, w, b)
    assert torch.allclose((w * (p + d)).sum(1), b, atol=1e-4)
    assert ((p + d) >= -1e-6).all() and ((p + d) <= 1 + 1e-6).all()
    # Least ‖d‖∞: any smaller uniform budget cannot reach the hyperplane (the best move at budget λ).
    lam = d.abs().amax(1, keepdim=True) * 0.99
    side = torch.sign((w * p).sum(1) - b)[:, None]
    best = torch.where(-side * w > 0, torch.min(p + lam, torch.ones_like(p)), torch.max(p - lam, torch.zeros_like(p))) - p
    assert ((side.squeeze(1) * ((w * (p + best)).sum(1) - b)) > 0).all()


@pytest.mark.parametrize("network", ["tiny", "built-in"])
def test_cascade_equals_torchattacks_autoattack_at_its_budgets(model, network):
    # The built-in CNN is attacked in channels-last layout (attack_layout), torchattacks' copy in the standard one.
    model = model if network == "tiny" else trained_demo_cnn()
    x, y = held_out_digits(40)
    settings = EnsembleSettings(apgd_steps=10, fab_steps=10, square_queries=100, seed=0)
    result = autoattack(model, x, y, EPS, settings)
    reference = torchattacks.AutoAttack(model, eps=EPS, version="standard", n_classes=10, seed=0)
    reference._autoattack.attacks[-1].n_queries = 100  # Square's 5,000 queries would take minutes here
    theirs = reference(x, y)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(result.robust, model(theirs).argmax(1) == y)
    assert 0 < int(result.robust.sum()) < len(x)
    # Bookkeeping: every image is accounted for, each attack ran on the images the previous left.
    counts = {name: result.broken_by.count(name) for name in ("clean", "", *ATTACK_NAMES)}
    assert sum(counts.values()) == len(x) and counts[""] == int(result.robust.sum())
    standing = len(x) - counts["clean"]
    for cost in result.costs:
        assert cost.images == standing and cost.broken == counts[cost.attack]
        standing -= cost.broken
        nominal_forward, nominal_gradient = settings.nominal_passes(cost.attack)
        assert cost.gradient_images <= cost.images * nominal_gradient
        assert cost.forward_images <= cost.images * nominal_forward + cost.broken
    broken = ~result.robust
    assert ((result.adversarial - x).abs().amax((1, 2, 3)) <= EPS + 1e-6).all()
    with torch.no_grad():
        assert (model(result.adversarial[broken]).argmax(1) != y[broken]).all()


def test_full_settings_are_the_original_autoattack():
    s = EnsembleSettings()
    assert (s.apgd_steps, s.targets, s.fab_steps, s.square_queries) == (100, 9, 100, 5000)


class NoEmptyBatch(torch.nn.Module):
    """A network that cannot take an empty batch, as MONAI's ResNet (`x.view(x.size(0), -1)`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert len(x), "an empty batch"
        return self.model(x)


def test_the_cascade_never_runs_a_network_on_an_empty_batch(model, batch):
    # At ε = 0.001 no attack breaks an image: each one's checks are on no image at all.
    x, y = batch
    result = autoattack(NoEmptyBatch(model), x[:4], y[:4], 0.001, EnsembleSettings(apgd_steps=2, targets=1, fab_steps=2, square_queries=3))
    assert result.robust.all() and [c.broken for c in result.costs] == [0, 0, 0, 0]


def test_only_a_builtin_cnn_on_cpu_is_attacked_in_channels_last_layout(model):
    x, _ = held_out_digits(4)
    builtin = trained_demo_cnn()
    fast, fast_x = attack_layout(builtin, x)
    # The second convolution (16 input channels: a 1-channel tensor is contiguous in both layouts at once).
    assert fast is not builtin and fast[4].weight.is_contiguous(memory_format=torch.channels_last)
    assert not builtin[4].weight.is_contiguous(memory_format=torch.channels_last)  # the caller's model is untouched
    assert fast_x.is_contiguous(memory_format=torch.channels_last) and x.is_contiguous()
    with torch.no_grad():
        assert torch.allclose(fast(fast_x), builtin(x), atol=1e-5)
    same_model, same_x = attack_layout(model, x)  # a user's network (here a plain nn.Sequential): as given
    assert same_model is model and same_x is x
