"""The engine's attacks equal torchattacks' (an independent implementation) bit for bit.

torchattacks is a test-only peer installed with --no-deps (see the Makefile). Why each oracle is
the one it is: docs/engine.md, "Attack oracles" (PGD against torchattacks.PGD, Ross's TGSM
against BIM(eps=1) targeted, JSMA θ > 0 against torchattacks.JSMA; θ < 0 is checked by its
invariants in tests/engine/test_attacks.py). The one-step attacks and PGD are checked on two
networks: the tiny digit CNN and a ResNet from MONAI on the RGB shapes, as the engine builds it
(its normalisation wrapper included).
"""
from __future__ import annotations

import pytest
import torch

from engine import attacks
from tinycnn import digits, model, shapes, trained_resnet  # noqa: F401  (fixture)

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits()
    return x[:64], y[:64]


@pytest.fixture(scope="module", params=["tiny-cnn", "monai-resnet"])
def network(request, model, batch) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(model, images, labels): the digit CNN on 64 test digits, or MONAI's ResNet on the 40 test shapes."""
    if request.param == "tiny-cnn":
        return model, *batch
    test = shapes().test
    return trained_resnet(), test.x, test.y


def targeted(attack: "torchattacks.Attack") -> "torchattacks.Attack":
    attack.set_mode_targeted_by_label(quiet=True)
    return attack


def test_fgsm_equals_torchattacks(network):
    model, x, y = network
    for eps in (0.1, 0.3):
        assert torch.equal(attacks.fgsm(model, x, y, eps), torchattacks.FGSM(model, eps=eps)(x, y))


def test_single_step_tgsm_equals_torchattacks_targeted_fgsm(network):
    model, x, y = network
    t = (y + 1) % 10
    assert torch.equal(attacks.tgsm(model, x, t, 0.2), targeted(torchattacks.FGSM(model, eps=0.2))(x, t))


def test_pgd_without_random_start_equals_torchattacks(network):
    model, x, y = network
    ours = attacks.pgd(model, x, y, eps=0.3, step=0.02, steps=20, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.3, alpha=0.02, steps=20, random_start=False)(x, y)
    assert torch.equal(ours, theirs)


def test_pgd_random_start_with_seed_equals_torchattacks_after_manual_seed(network):
    model, x, y = network
    ours = attacks.pgd(model, x, y, eps=0.3, step=0.05, steps=5, seed=7)
    torch.manual_seed(7)
    assert torch.equal(ours, torchattacks.PGD(model, eps=0.3, alpha=0.05, steps=5)(x, y))


def test_iterated_tgsm_without_ball_equals_targeted_bim(model, batch):
    x, y = batch
    t = (y + 1) % 10
    ours, success = attacks.itgsm(model, x, t, step=0.1, iterations=10)
    theirs = targeted(torchattacks.BIM(model, eps=1.0, alpha=0.1, steps=10))(x, t)
    assert torch.equal(ours, theirs)
    assert torch.equal(success, model(theirs).argmax(1) == t)


@pytest.mark.parametrize("gamma", [0.05, 0.25])
def test_jsma_increasing_equals_torchattacks_image_for_image(model, batch, gamma):
    x, y = batch[0][:8], batch[1][:8]
    t = (y + 3) % 10
    ours, success = attacks.jsma(model, x, t, theta=1.0, gamma=gamma)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torchattacks runs one image at a time: threads only add overhead
    try:
        theirs = targeted(torchattacks.JSMA(model, theta=1.0, gamma=gamma))(x, t)
    finally:
        torch.set_num_threads(threads)
    assert [torch.equal(a, b) for a, b in zip(ours, theirs)] == [True] * len(x)
    assert torch.equal(success, model(theirs).argmax(1) == t)
