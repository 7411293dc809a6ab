import math
import statistics

import pytest
import torch
from torch import nn

from distill.errors import ConfigError
from distill.tasks.dataset.metrics import (
    ddranking_scores,
    evaluate_set,
    herding_subset,
    random_subset,
    test_accuracy,
    train_on_set,
)
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet


def _linear(inputs=2, classes=2):
    return lambda: nn.Sequential(nn.Flatten(), nn.Linear(inputs, classes))


def _blobs(n, seed, gap=1.0, spread=0.3):
    """Two classes in 2-D, separated along x by ``2 * gap``; images shaped (n, 1, 1, 2)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=g) * spread
    points[:, 0] += (labels.float() * 2 - 1) * gap
    return points.view(n, 1, 1, 2), labels


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_train_on_set_learns_a_separable_toy_and_is_reproducible():
    x, y = _blobs(40, seed=0)
    tx, ty = _blobs(400, seed=1)
    state = torch.get_rng_state()
    model = train_on_set(x, y, _linear(), epochs=30, lr=0.1, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    assert test_accuracy(model, tx, ty) >= 99.0
    again = train_on_set(x, y, _linear(), epochs=30, lr=0.1, batch_size=16, generator=torch.Generator().manual_seed(0))
    other = train_on_set(x, y, _linear(), epochs=30, lr=0.1, batch_size=16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_weights(model), _weights(again))
    assert not torch.allclose(_weights(model), _weights(other))


def test_lr_is_cut_tenfold_at_half_the_epochs():
    x, y = _blobs(8, seed=0)
    for epochs, expected in [(6, [0.05] * 3 + [0.005] * 3), (7, [0.05] * 3 + [0.005] * 4), (1, [0.05])]:
        seen = []
        train_on_set(x, y, _linear(), epochs=epochs, lr=0.05, generator=torch.Generator().manual_seed(0),
                     on_epoch=lambda epoch, lr, loss: seen.append((epoch, lr, loss)))
        assert [e for e, _, _ in seen] == list(range(epochs))
        assert [lr for _, lr, _ in seen] == pytest.approx(expected)
        assert all(math.isfinite(loss) for _, _, loss in seen)


def test_augment_gets_a_fresh_call_for_every_minibatch():
    calls = []

    class Record:
        def __call__(self, images, generator):
            calls.append((images.shape[0], generator))
            return images + 0.01 * torch.randn(images.shape, generator=generator)

    x, y = _blobs(10, seed=0)
    g = torch.Generator().manual_seed(0)
    train_on_set(x, y, _linear(), epochs=3, batch_size=4, augment=Record(), generator=g)
    assert [n for n, _ in calls] == [4, 4, 2] * 3
    assert all(gen is g for _, gen in calls)


def test_soft_labels_train_toward_the_soft_targets():
    x = torch.eye(4).view(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 0])
    soft = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])
    for temperature in (1.0, 2.0):
        model = train_on_set(x, y, _linear(4, 3), epochs=300, lr=0.5, batch_size=4, weight_decay=0.0,
                             soft_labels=soft, temperature=temperature, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            got = torch.softmax(model(x) / temperature, dim=1)
        assert torch.allclose(got, torch.softmax(soft / temperature, dim=1), atol=0.02)
    hard = train_on_set(x, y, _linear(4, 3), epochs=300, lr=0.5, batch_size=4, weight_decay=0.0,
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (torch.softmax(hard(x), dim=1)[torch.arange(4), y] > 0.9).all()  # hard labels: confident


def test_test_accuracy_counts_correct_predictions_and_keeps_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Identity())  # predicts the argmax coordinate
    x = torch.eye(3).repeat(2, 1).view(6, 1, 1, 3)
    y = torch.tensor([0, 1, 2, 0, 0, 0])  # 4 of 6 right
    model.train()
    assert test_accuracy(model, x, y, batch_size=4) == pytest.approx(400 / 6)
    assert model.training


def test_evaluate_set_scores_final_networks_and_reports_their_mean_and_std():
    x, y = _blobs(12, seed=0, gap=0.3, spread=1.0)  # overlapping: accuracies differ between networks
    tx, ty = _blobs(300, seed=1, gap=0.3, spread=1.0)
    kwargs = dict(epochs=4, lr=0.05, batch_size=4)
    result = evaluate_set(x, y, tx, ty, _linear(), networks=4, seed=3, **kwargs)
    accs = result["accuracies"]
    assert len(accs) == 4 and len(set(accs)) > 1
    assert result["mean"] == pytest.approx(statistics.fmean(accs))
    assert result["std"] == pytest.approx(statistics.pstdev(accs))
    # network i is the final network trained with the i-th seed drawn from `seed`; it alone is scored
    seeds = torch.randint(2**62, (4,), generator=torch.Generator().manual_seed(3)).tolist()
    for acc, s in zip(accs, seeds):
        model = train_on_set(x, y, _linear(), generator=torch.Generator().manual_seed(s), **kwargs)
        assert test_accuracy(model, tx, ty) == acc
    assert evaluate_set(x, y, tx, ty, _linear(), networks=2, seed=3, **kwargs)["accuracies"] == accs[:2]
    single = evaluate_set(x, y, tx, ty, _linear(), networks=1, seed=3, **kwargs)
    assert single["std"] == 0.0 and single["mean"] == accs[0]


def _bank(sizes):
    """Images filled with their own index, so a picked image says where it came from."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.arange(len(labels), dtype=torch.float).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return ClassBank(images, labels, len(sizes))


def test_random_subset_draws_ipc_distinct_images_per_class_by_seed():
    bank = _bank([5, 6, 7])
    images, labels = random_subset(bank, 3, torch.Generator().manual_seed(0))
    assert images.shape == (9, 1, 2, 2) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    picked = images[:, 0, 0, 0].long()
    assert torch.equal(bank.labels[picked], labels) and len(set(picked.tolist())) == 9
    same, _ = random_subset(bank, 3, torch.Generator().manual_seed(0))
    other, _ = random_subset(bank, 3, torch.Generator().manual_seed(1))
    assert torch.equal(images, same) and not torch.equal(images, other)
    assert torch.equal(images, SyntheticSet.from_real(bank, 3, torch.Generator().manual_seed(0)).images.detach())


def test_herding_follows_the_running_mean_not_the_nearest_points():
    # class 0 features [3.9, 4.2, 5, 0, 7.9], mean 4.2. Greedy running-mean choice:
    #  1: |4.2 - f|          -> 4.2 ; 2: |4.2 - f| / 2 -> 3.9 ; 3: |4.5 - f| / 3 -> 5 ;
    #  4: |3.7 - f| / 4      -> 0 (3.7 away) beats 7.9 (4.2 away), though 7.9 is nearer the mean.
    # class 1 features [1, 2, 3], mean 2: 2 first, then 1 and 3 tie and the lower index (1) wins.
    features = torch.tensor([3.9, 1.0, 4.2, 5.0, 2.0, 0.0, 3.0, 7.9])
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 1, 0])
    bank = ClassBank(features.view(-1, 1, 1, 1), labels, 2)
    images, out_labels = herding_subset(bank, 3, lambda x: x.flatten(1))
    assert out_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images.flatten().tolist() == pytest.approx([4.2, 3.9, 5.0, 2.0, 1.0, 3.0])
    four = ClassBank(features[labels == 0].view(-1, 1, 1, 1), torch.zeros(5, dtype=torch.long), 1)
    chosen, _ = herding_subset(four, 4, lambda x: x.flatten(), batch_size=2)  # (n,) features, chunked
    assert chosen.flatten().tolist() == pytest.approx([4.2, 3.9, 5.0, 0.0])


def test_ddranking_scores_match_hand_computation():
    s = ddranking_scores(method_acc=60.0, random_acc=45.0, full_acc=85.0, method_hard_acc=50.0)
    assert s["hard_label_recovery"] == pytest.approx(35.0)  # 85 - 50
    assert s["improvement_over_random"] == pytest.approx(15.0)  # 60 - 45
    # alpha = 0.5 * 0.15 - 0.5 * 0.35 = -0.1; LRS = (e^-0.1 - e^-1) / (e - e^-1) = 0.228454
    assert s["label_robust_score"] == pytest.approx(22.8454, abs=1e-3)
    assert s["runs"] == 1 and s["label_robust_score_std"] == 0.0
    best = ddranking_scores(100.0, 0.0, 50.0, 50.0, weight=1.0)
    worst = ddranking_scores(50.0, 50.0, 100.0, 0.0, weight=0.0)
    assert best["label_robust_score"] == pytest.approx(100.0) and worst["label_robust_score"] == pytest.approx(0.0)
    runs = ddranking_scores([60.0, 70.0], [50.0, 50.0], 80.0, [40.0, 60.0])
    assert runs["per_run"]["improvement_over_random"] == pytest.approx([10.0, 20.0])
    assert runs["per_run"]["hard_label_recovery"] == pytest.approx([40.0, 20.0])
    assert runs["improvement_over_random"] == pytest.approx(15.0) and runs["improvement_over_random_std"] == 5.0
    lrs = [100 * (math.exp(a) - math.exp(-1)) / (math.e - math.exp(-1)) for a in (-0.15, 0.0)]
    assert runs["label_robust_score"] == pytest.approx(sum(lrs) / 2)


def test_bad_inputs_raise_config_errors():
    x, y = _blobs(8, seed=0)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="labels must be"):
        train_on_set(x, y[:5], _linear(), epochs=2, generator=g)
    with pytest.raises(ConfigError, match="epochs"):
        train_on_set(x, y, _linear(), epochs=0, generator=g)
    with pytest.raises(ConfigError, match="integer class"):
        train_on_set(x, y.float(), _linear(), epochs=1, generator=g)
    with pytest.raises(ConfigError, match="soft_labels"):
        train_on_set(x, y, _linear(), epochs=1, generator=g, soft_labels=torch.zeros(7, 2))
    with pytest.raises(ConfigError, match="epochs"):
        evaluate_set(x, y, x, y, _linear(), networks=2, seed=0, epochs=0)
    with pytest.raises(ConfigError, match="test labels"):
        evaluate_set(x, y, x, y[:3], _linear(), networks=2, seed=0, epochs=1)
    with pytest.raises(ConfigError, match="networks"):
        evaluate_set(x, y, x, y, _linear(), networks=0, seed=0, epochs=1)
    bank = _bank([5, 2, 4])
    with pytest.raises(ConfigError, match=r"ipc=3 .*class\(es\) \[1\]"):
        random_subset(bank, 3, g)
    with pytest.raises(ConfigError, match="ipc=3"):
        herding_subset(bank, 3, lambda t: t.flatten(1))
    with pytest.raises(ConfigError, match="percent"):
        ddranking_scores(60.0, 50.0, 90.0, 150.0)
    with pytest.raises(ConfigError, match="equal lengths"):
        ddranking_scores([60.0, 61.0], [50.0, 50.0, 50.0], 80.0, 55.0)
