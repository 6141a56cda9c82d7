"""Each regime's loss is what it claims, and training lowers it, reproducibly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import regimes
from engine.attacks import fgsm
from engine.config import make_config
from engine.data import Split, load_dataset
from engine.models import CNN
from engine.regimes.adversarial import adversarial_examples
from engine.regimes.distilled import soft_labels
from engine.training import train

LAMBDA = 1e4


def tiny_model() -> CNN:
    torch.manual_seed(0)
    return CNN(2, 2, 4, dropout=0.0).double().train()  # no dropout: the loss is a function of x alone


def digits(n: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset()
    return ds.train.x[start:start + n], ds.train.y[start:start + n]


def finite_difference_gradient(f, x: torch.Tensor, pixels: list[tuple[int, int, int, int]], h: float = 1e-4) -> torch.Tensor:
    out = []
    for i in pixels:
        e = torch.zeros_like(x)
        e[i] = h
        out.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(out)


OBJECTIVES = {  # the objective whose input gradient each penalty regime penalises
    "gradreg": lambda logits, y: F.cross_entropy(logits, y),
    "gradreg-uniform": lambda logits, y: F.log_softmax(logits, 1).sum(1).mean(),
}


def regime_loss(name: str, cfg):
    return lambda model, x, y: regimes.get(name).loss(model, x, y, cfg.params(name))


@pytest.mark.parametrize("regime", sorted(OBJECTIVES))
def test_gradient_penalty_equals_finite_differences(regime):
    # penalty = λ·½‖∇ₓ objective‖² with BN in training mode (the batch's examples are coupled).
    objective = OBJECTIVES[regime]
    loss_fn = regime_loss(regime, make_config(overrides={f"{regime}.lambda": LAMBDA}))
    model = tiny_model()
    x, y = digits(2)
    # Jitter breaks the exact ties that blank background makes in max-pooling, where no derivative exists.
    x = x.double() + 1e-3 * torch.rand(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    penalty = (loss_fn(model, x, y) - F.cross_entropy(model(x), y)).item() / LAMBDA
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(model(xr), y), xr)
    assert penalty == pytest.approx(0.5 * grad.pow(2).sum().item(), rel=1e-9)
    # ... and that input gradient is the true one: central differences on 100 pixels of both images.
    pixels = [(b, 0, r, c) for b in range(2) for r in range(9, 19) for c in range(9, 14)]
    with torch.no_grad():
        fd = finite_difference_gradient(lambda z: objective(model(z), y), x, pixels)
    assert torch.allclose(torch.stack([grad[p] for p in pixels]), fd, rtol=1e-4, atol=1e-10)


def test_gradient_penalty_trains_the_weights():
    # Double backprop must reach the first layer: d(penalty)/dθ agrees with finite differences in θ.
    gradreg_loss = regime_loss("gradreg", make_config(overrides={"gradreg.lambda": 1.0}))
    model = tiny_model()
    x, y = (t.double() if t.is_floating_point() else t for t in digits(4))
    w = model[0].weight
    direction = torch.randn_like(w)
    penalty = lambda: gradreg_loss(model, x, y) - F.cross_entropy(model(x), y)
    (analytic,) = torch.autograd.grad(penalty(), w)
    h = 1e-6
    with torch.no_grad():
        w += h * direction
    up = penalty().item()
    with torch.no_grad():
        w -= 2 * h * direction
    down = penalty().item()
    assert analytic.abs().sum() > 0
    assert (analytic * direction).sum().item() == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_soft_labels_are_distributions_softened_by_temperature():
    model = tiny_model().float()
    x, _ = digits(50)
    hot, soft = soft_labels(model, x, 1.0), soft_labels(model, x, 50.0)
    assert torch.allclose(soft.sum(1), torch.ones(50)) and torch.all(soft >= 0)
    entropy = lambda p: -(p * p.clamp_min(1e-30).log()).sum(1)
    assert torch.all(entropy(soft) > entropy(hot))


def test_adversarial_training_examples():
    model = tiny_model().float()
    x, y = digits(32)
    x_adv = adversarial_examples(model, x, 0.3)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    assert torch.equal(x_adv, fgsm(model, x, predicted, 0.3))  # the model's own labels, not the true ones
    assert model.training is False  # the attack restored the mode it found
    # In eval mode (no BN batch coupling) the loss is exactly ½ clean CE + ½ adversarial CE.
    with torch.no_grad():
        expected = 0.5 * (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y))
    assert regime_loss("adversarial", make_config())(model, x, y).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.fixture(scope="module")
def small_split() -> Split:
    ds = load_dataset()
    return Split(ds.train.x[:192], ds.train.y[:192], ds.train.indices[:192])


@pytest.fixture
def epoch_losses(monkeypatch) -> dict[str, list[float]]:
    """Each training loop's mean loss per epoch, by the loop's progress-bar label, as train() runs."""
    history = {}
    import engine.training as training
    real_fit = training.fit_loss

    def spy(*args, **kwargs):
        history[kwargs.get("desc")] = losses = real_fit(*args, **kwargs)
        return losses

    monkeypatch.setattr(training, "fit_loss", spy)
    return history


@pytest.mark.parametrize("condition", regimes.names())
def test_a_few_epochs_lower_the_loss(condition, small_split, epoch_losses):
    cfg = make_config(overrides={"epochs": 3})
    train(condition, cfg, small_split, seed=0, progress=False)
    for losses in epoch_losses.values():
        assert losses[-1] < losses[0]


def test_pgd_adversarial_trains_epoch_factor_times_the_epochs(small_split, epoch_losses):
    """The demo preset doubles PGD training's schedule; the paper preset and a factor of 1 keep train.epochs."""
    for preset, overrides, epochs in (("demo", {}, 4), ("demo", {"pgd-adversarial.epoch_factor": 1}, 2), ("paper", {}, 2)):
        cfg = make_config(preset, {"epochs": 2, "train_size": 64, "architecture": "demo", "device": "cpu",
                                   "pgd-adversarial.steps": 1, **overrides})
        train("pgd-adversarial", cfg, small_split, seed=0, progress=False)
        assert len(epoch_losses["pgd-adversarial"]) == epochs, (preset, overrides)


def test_same_seed_same_weights_other_seed_other_weights(small_split):
    cfg = make_config(overrides={"epochs": 1, "train_size": 128})
    a, _ = train("normal", cfg, small_split, seed=1, progress=False)
    b, _ = train("normal", cfg, small_split, seed=1, progress=False)
    c, _ = train("normal", cfg, small_split, seed=2, progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["0.weight"], sc["0.weight"])


def test_docs_carry_the_registry_table():
    """docs/engine.md's regime table is `python -m engine.regimes`, so the docs follow the registry."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    table = text.split("-->\n", 1)[1].split("<!-- regimes:end", 1)[0].strip()
    assert table == regimes.markdown_table().strip()


def test_pgd_adversarial_loss_is_the_cross_entropy_on_pgd_examples_with_random_start():
    import copy

    from engine.attacks import pgd
    model = tiny_model().float()
    twin = copy.deepcopy(model)  # the loss's training-mode forward moves BN's running statistics
    x, y = digits(16)
    params = make_config(overrides={"pgd-adversarial.steps": 3}).params("pgd-adversarial")
    torch.manual_seed(4)
    loss = regimes.get("pgd-adversarial").loss(model, x, y, params)
    torch.manual_seed(4)  # the same random start
    x_adv = pgd(twin, x, y, params.eps, params.step, 3, random_start=True)
    model = twin
    assert model.training and (x_adv - x).abs().max() <= params.eps + 1e-6
    assert loss.item() == pytest.approx(F.cross_entropy(model(x_adv), y).item(), rel=1e-6)


def test_trades_inner_maximisation_raises_the_kl_inside_the_ball():
    from engine.regimes.trades import kl, worst_neighbour
    model = tiny_model().float()
    x, y = digits(16)
    params = make_config().params("trades")
    torch.manual_seed(0)
    adv = worst_neighbour(model, x, params)
    assert (adv - x).abs().max() <= params.eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1 and model.training
    with torch.no_grad():
        model.eval()
        probs = F.softmax(model(x), 1)
        assert kl(model(adv), probs) > 10 * kl(model(x + 0.001 * torch.randn_like(x)), probs)
        model.train()
    no_kl = make_config(overrides={"trades.beta": 0}).params("trades")
    assert regimes.get("trades").loss(model, x, y, no_kl).item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
