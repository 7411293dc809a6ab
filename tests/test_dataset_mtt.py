"""Trajectory matching (MTT): expert trajectories, the normalised loss, the functional unroll, the condenser."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parameters_to_vector

from distill.errors import ConfigError
from distill.tasks.dataset.experts import load_trajectories, save_trajectories, train_expert_trajectories
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet

MTT = "distill.tasks.dataset.methods.mtt"


@pytest.fixture(scope="module")
def mtt():
    return importlib.import_module(MTT)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def make_bank(per_class: int = 4, seed: int = 0) -> ClassBank:
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 1, 8, 8, generator=g)
    labels = torch.arange(10).repeat_interleave(per_class)
    images = patterns[labels] + 0.5 * torch.randn(len(labels), 1, 8, 8, generator=g)
    return ClassBank(images, labels, 10)


class CountingAugment:
    """Duck-typed augment: a random per-draw scale, differentiable in the images; counts draws and batch sizes."""

    def __init__(self) -> None:
        self.draws, self.sizes = 0, []

    def draw(self, generator):
        self.draws += 1
        return 1.0 + 0.1 * torch.rand((), generator=generator)

    def apply(self, images, draw):
        self.sizes.append(images.shape[0])
        return images * draw


# ---------------------------------------------------------------- the loss


def test_loss_hand_checked(mtt):
    start, target = torch.zeros(2), torch.tensor([2.0, 0.0])
    loss = mtt.trajectory_matching_loss
    assert loss(target.clone(), start, target).item() == 0.0
    assert loss(start.clone(), start, target).item() == pytest.approx(1.0)
    # ((1 - 2)² + 1²) / 2² = 0.5
    assert loss(torch.tensor([1.0, 1.0]), start, target).item() == pytest.approx(0.5)
    # halfway along the expert's path: (1/2)² of the expert's distance
    assert loss(torch.tensor([1.0, 0.0]), start, target).item() == pytest.approx(0.25)


def test_loss_scale_invariant_and_flattens(mtt):
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(3, 5, generator=g) for _ in range(3))
    base = mtt.trajectory_matching_loss(a, b, c)
    assert mtt.trajectory_matching_loss(7.5 * a, 7.5 * b, 7.5 * c).item() == pytest.approx(base.item(), rel=1e-5)
    flat = mtt.trajectory_matching_loss(a.flatten(), b.flatten(), c.flatten())
    assert flat.item() == pytest.approx(base.item(), rel=1e-6)
    shifted = mtt.trajectory_matching_loss(a + 3.0, b + 3.0, c + 3.0)  # translation invariant too
    assert shifted.item() == pytest.approx(base.item(), rel=1e-4)


# ---------------------------------------------------------------- experts


def test_expert_trajectories_shape_start_and_movement():
    bank, template = make_bank(), tiny_net()
    P = sum(p.numel() for p in template.parameters())
    trajectories = train_expert_trajectories(bank, lambda: copy.deepcopy(template), experts=2, epochs=3, lr=0.01,
                                             batch_size=16, generator=torch.Generator().manual_seed(0))
    assert len(trajectories) == 2
    initial = parameters_to_vector(template.parameters()).detach()
    for trajectory in trajectories:
        assert trajectory.shape == (4, P) and trajectory.dtype == torch.float32
        assert torch.equal(trajectory[0], initial)
        steps = (trajectory[1:] - trajectory[:-1]).norm(dim=1)
        assert (steps > 1e-4).all()  # every epoch moves the parameters
    assert not torch.equal(trajectories[0][-1], trajectories[1][-1])  # different shuffles, different experts
    assert torch.equal(parameters_to_vector(template.parameters()).detach(), initial)  # template untouched


def test_expert_epoch_is_plain_sgd_and_deterministic():
    bank, template = make_bank(), tiny_net()
    full = bank.images.shape[0]
    trajectory, = train_expert_trajectories(bank, lambda: copy.deepcopy(template), experts=1, epochs=1, lr=0.01,
                                            batch_size=full, generator=torch.Generator().manual_seed(0))
    net = copy.deepcopy(template)
    loss = F.cross_entropy(net(bank.images), bank.labels)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    expected = parameters_to_vector(template.parameters()).detach() - 0.01 * torch.cat([g.flatten() for g in grads])
    torch.testing.assert_close(trajectory[1], expected, rtol=1e-5, atol=1e-6)

    again = [train_expert_trajectories(bank, lambda: copy.deepcopy(template), experts=1, epochs=2, batch_size=8,
                                       generator=torch.Generator().manual_seed(3))[0] for _ in range(2)]
    assert torch.equal(again[0], again[1])


def test_expert_training_augments_every_batch_and_learns():
    bank, template = make_bank(per_class=6), tiny_net()
    augment = CountingAugment()
    trajectory, = train_expert_trajectories(bank, lambda: copy.deepcopy(template), experts=1, epochs=4, lr=0.05,
                                            batch_size=16, generator=torch.Generator().manual_seed(0),
                                            augment=augment, progress=True)
    assert augment.draws == 4 * 4  # 60 images in batches of 16: 4 batches per epoch
    assert sorted(set(augment.sizes)) == [12, 16]
    net = copy.deepcopy(template)

    def real_loss(vector):
        torch.nn.utils.vector_to_parameters(vector, net.parameters())
        with torch.no_grad():
            return F.cross_entropy(net(bank.images), bank.labels).item()

    assert real_loss(trajectory[-1]) < real_loss(trajectory[0]) - 0.1


def test_expert_training_refuses_bad_arguments():
    bank = make_bank()
    with pytest.raises(ConfigError, match="experts"):
        train_expert_trajectories(bank, tiny_net, experts=0, epochs=1, generator=torch.Generator())
    with pytest.raises(ConfigError, match="lr"):
        train_expert_trajectories(bank, tiny_net, experts=1, epochs=1, lr=0.0, generator=torch.Generator())


def test_save_load_round_trip_and_refusals(tmp_path):
    g = torch.Generator().manual_seed(0)
    trajectories = [torch.randn(4, 650, generator=g) for _ in range(12)]  # > 10: order must survive sorting
    path = save_trajectories(trajectories, tmp_path / "experts.safetensors")
    loaded = load_trajectories(path)
    assert len(loaded) == 12 and all(torch.equal(a, b) for a, b in zip(trajectories, loaded))

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        load_trajectories(bad)
    other = tmp_path / "other.safetensors"
    save_file({"images": torch.zeros(2, 3)}, str(other))
    with pytest.raises(ConfigError, match="no expert trajectories"):
        load_trajectories(other)
    with pytest.raises(ConfigError, match="no expert trajectories at"):
        load_trajectories(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError):
        save_trajectories([], tmp_path / "empty.safetensors")


# ---------------------------------------------------------------- the unroll


def _hand_sgd(weight, bias, images, labels, lr, chunks):
    """Softmax regression by hand: ∇W = (softmax - onehot)ᵀ x / n, ∇b = mean(softmax - onehot)."""
    for pick in chunks:
        x, y = images[pick].flatten(1), labels[pick]
        err = torch.softmax(x @ weight.T + bias, dim=1) - F.one_hot(y, 10).to(x.dtype)
        weight = weight - lr * err.T @ x / len(pick)
        bias = bias - lr * err.mean(0)
    return torch.cat([weight.flatten(), bias])


def test_unroll_equals_hand_written_sgd(mtt):
    net, bank = tiny_net(), make_bank()
    images, labels = bank.images[:12], bank.labels[:12]
    start = parameters_to_vector(net.parameters()).detach()
    weight, bias = net[1].weight.detach(), net[1].bias.detach()

    end = mtt.unroll_student(net, start, images, labels, 0.5, 4)
    expected = _hand_sgd(weight, bias, images, labels, 0.5, [torch.arange(12)] * 4)
    torch.testing.assert_close(end, expected, rtol=1e-5, atol=1e-6)
    assert (end - start).norm() > 0.1

    # minibatches: consecutive chunks of one permutation, redrawn once used up
    end = mtt.unroll_student(net, start, images, labels, 0.5, 5, batch_size=5,
                             generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    chunks = list(torch.randperm(12, generator=g).split(5)) + list(torch.randperm(12, generator=g).split(5))[:2]
    torch.testing.assert_close(end, _hand_sgd(weight, bias, images, labels, 0.5, chunks), rtol=1e-5, atol=1e-6)


def test_unroll_gradients_match_finite_differences(mtt):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    start = parameters_to_vector(net.parameters()).detach()
    target = start + 0.3 * torch.randn_like(start)
    labels = torch.tensor([0, 1, 2, 1])
    images = torch.randn(4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def loss(images, lr):
        end = mtt.unroll_student(net, start, images, labels, lr, 3)
        return mtt.trajectory_matching_loss(end, start, target)

    assert torch.autograd.gradcheck(loss, (images, lr))


# ---------------------------------------------------------------- the condenser


def _setup(mtt, experts=2, epochs=4, **options):
    bank, template = make_bank(), tiny_net()
    trajectories = train_expert_trajectories(bank, lambda: copy.deepcopy(template), experts=experts, epochs=epochs,
                                             lr=0.05, batch_size=8, generator=torch.Generator().manual_seed(0))
    synthetic = SyntheticSet.from_real(bank, 1, torch.Generator().manual_seed(1))
    condenser = mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=trajectories, **options)
    return condenser, synthetic, trajectories


def test_registered_with_reference_defaults(mtt):
    from distill.tasks.dataset.methods.base import CONDENSERS

    assert CONDENSERS.get("mtt") is mtt.TrajectoryMatching
    condenser, _, _ = _setup(mtt, epochs=28)
    assert (condenser.syn_steps, condenser.expert_epochs, condenser.max_start_epoch) == (20, 3, 25)
    assert condenser.syn_lr.item() == pytest.approx(0.01) and condenser.batch_syn is None
    assert condenser.optimizer.param_groups[0]["lr"] == 1000.0
    assert condenser.optimizer.param_groups[0]["momentum"] == 0.5
    assert condenser.lr_optimizer.param_groups[0]["lr"] == 1e-5
    assert condenser.lr_optimizer.param_groups[0]["momentum"] == 0.5


def test_iteration_updates_images_and_lr(mtt):
    condenser, synthetic, _ = _setup(mtt, syn_steps=3, expert_epochs=1, max_start_epoch=2, lr=100.0,
                                     lr_lr=1e-3)
    before = synthetic.images.detach().clone()
    row = condenser.iteration(torch.Generator().manual_seed(0))
    assert set(row) == {"loss", "syn_lr"}
    assert torch.isfinite(torch.tensor(row["loss"])) and row["loss"] > 0
    assert not torch.equal(synthetic.images.detach(), before)
    assert row["syn_lr"] != pytest.approx(0.01, abs=1e-9) and row["syn_lr"] == condenser.syn_lr.item() > 0
    assert synthetic.images.grad is not None and condenser.syn_lr.grad is not None


def test_iterations_reduce_the_matching_loss(mtt):
    condenser, synthetic, trajectories = _setup(mtt, experts=1, syn_steps=5, expert_epochs=2, max_start_epoch=1,
                                                lr=100.0, lr_lr=1e-4)
    # one expert and max_start_epoch 1: the same start and target every iteration, a fixed objective
    losses = [condenser.iteration(torch.Generator().manual_seed(i))["loss"] for i in range(15)]
    assert losses[-1] < 0.9 * losses[0]


def test_iteration_augments_each_student_step(mtt):
    augment = CountingAugment()
    condenser, synthetic, _ = _setup(mtt, syn_steps=4, expert_epochs=1, max_start_epoch=2, batch_syn=3)
    condenser.augment = augment
    condenser.iteration(torch.Generator().manual_seed(0))
    assert augment.draws == 4 and augment.sizes == [3, 3, 3, 1]  # 10 images in chunks of 3


def test_syn_lr_is_kept_positive(mtt):
    net, bank = tiny_net(), make_bank()
    synthetic = SyntheticSet.from_real(bank, 1, torch.Generator().manual_seed(1))
    start = parameters_to_vector(net.parameters()).detach()
    # the expert went the opposite way of the synthetic gradient step: the best step size is negative
    step = mtt.unroll_student(net, start, synthetic.images.detach(), synthetic.labels, 1.0, 1) - start
    trajectory = torch.stack([start, start - step.detach()])
    condenser = mtt.TrajectoryMatching(synthetic, bank, lambda: copy.deepcopy(net), trajectories=[trajectory],
                                       syn_steps=1, expert_epochs=1, max_start_epoch=1, lr_lr=10.0)
    row = condenser.iteration(torch.Generator().manual_seed(0))
    assert row["syn_lr"] == pytest.approx(mtt.MIN_SYN_LR)


def test_trajectory_checks(mtt, tmp_path):
    bank = make_bank()
    synthetic = SyntheticSet.from_real(bank, 1, torch.Generator().manual_seed(1))
    P = 64 * 10 + 10
    with pytest.raises(ConfigError, match="650"):
        mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=[torch.zeros(30, P + 1)])
    with pytest.raises(ConfigError, match="needs expert trajectories"):
        mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=[])
    with pytest.raises(ConfigError, match="needs expert trajectories"):
        mtt.TrajectoryMatching(synthetic, bank, tiny_net)
    with pytest.raises(ConfigError, match="max_start_epoch"):
        mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=[torch.zeros(5, P)], expert_epochs=2,
                               max_start_epoch=4)
    with pytest.raises(ConfigError, match="syn_steps"):
        mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=[torch.zeros(30, P)], syn_steps=0)
    # exactly enough epochs is accepted, and a saved file can be given by path
    path = save_trajectories([torch.randn(5, P)], tmp_path / "t.safetensors")
    condenser = mtt.TrajectoryMatching(synthetic, bank, tiny_net, trajectories=str(path), expert_epochs=2,
                                       max_start_epoch=3)
    assert len(condenser.trajectories) == 1 and condenser.trajectories[0].shape == (5, P)
