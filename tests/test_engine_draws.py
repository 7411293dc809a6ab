"""Per-sample random draws give each sample what one process with the whole batch would draw for it."""

import torch

from distill.engine import draws


def test_a_split_batch_draws_its_rows_of_the_whole_batchs_draw():
    x = torch.zeros(8, 3)
    torch.manual_seed(0)
    whole = [draws.randn_like(x), draws.rand(8), draws.randint(0, 100, 8)]
    parts = []
    for index in (0, 1):
        torch.manual_seed(0)
        with draws.batch_split(index, 2):
            parts.append([draws.randn_like(x[:4]), draws.rand(4), draws.randint(0, 100, 4)])
    for k, value in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][k], parts[1][k]]), value)
    assert not torch.equal(parts[0][0], parts[1][0])  # the halves do not share their noise


def test_outside_a_split_the_draws_are_torchs():
    x = torch.zeros(5, 2)
    torch.manual_seed(1)
    mine = draws.randn_like(x), draws.rand(5)
    torch.manual_seed(1)
    assert torch.equal(mine[0], torch.randn_like(x)) and torch.equal(mine[1], torch.rand(5))
