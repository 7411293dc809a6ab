"""Distribution matching (DM, Zhao & Bilen, WACV 2023).

Each iteration embeds a real batch and the synthetic images of every class with a freshly
initialised, untrained network and moves the synthetic images so that each class's mean
embedding matches the real one (``mean_embedding_distance``): one SGD step per iteration.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from distill.engine.processes import process_share, sum_over_processes
from distill.errors import check_int
from distill.taps import tapped
from distill.tasks.dataset.matching import mean_embedding_distance
from distill.tasks.dataset.methods.base import CONDENSERS, Condenser


@CONDENSERS.register("dm")
class DistributionMatching(Condenser):
    """Distribution matching (DM, Zhao & Bilen, WACV 2023): match per-class mean embeddings of random networks.

    Options: ``lr`` (1.0) and ``momentum`` (0.5) of the SGD on the images; ``real_per_class``
    real images per class and iteration (256). The features are the output of the network's
    module ``tap`` (:func:`distill.taps.tapped`, flattened to ``(B, D)``), so any network works by
    naming its feature layer; the network is never trained (its parameters are frozen) and is used in train mode, as in the reference.
    All classes go through one forward pass (the networks normalise per sample, so this equals
    one pass per class). With ``augment``, each class's real and synthetic images share one draw
    (a new draw per class), as the reference does.
    """

    defaults: ClassVar[dict[str, Any]] = {"lr": 1.0, "momentum": 0.5, "real_per_class": 256}

    @classmethod
    def check_values(cls, options: dict[str, Any], ipc: int | None) -> None:
        super().check_values(options, ipc)
        check_int("DistributionMatching: real_per_class", options["real_per_class"])

    def fresh_network(self, generator: torch.Generator) -> torch.nn.Module:
        return super().fresh_network(generator).requires_grad_(False)

    def matching_loss(self, network: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        """Σ_k ‖mean real embedding_k − mean synthetic embedding_k‖² on a fresh real batch
        (differentiable w.r.t. the synthetic images). Under several processes each embeds every
        ``count``-th real image of each class (every process draws the same batch, networks and
        augmentations from the same generator) and the per-class sums of the real embeddings are summed
        over the processes: the loss, and so the step every process takes on its copy of the images, is
        the one-process one."""
        index, count = process_share()
        real = self.real_batch(self.options["real_per_class"], generator)
        share, syn = self.augment_pairs(real[:, index::count], self.synthetic.per_class(), generator)
        with tapped(network, self.tap, "network") as embed:
            with torch.no_grad():
                real_sums = embed(share.flatten(0, 1)).view(*share.shape[:2], -1).sum(1)
            syn_embeddings = embed(syn.flatten(0, 1))
        real_means = sum_over_processes(real_sums) / real.shape[1]
        return mean_embedding_distance(real_means[:, None], syn_embeddings.view(*syn.shape[:2], -1))

    def iteration(self, generator: torch.Generator) -> dict[str, float]:
        """One image step on a fresh random network; ``loss`` is the matching loss per class
        (as the reference logs it)."""
        loss = self.matching_loss(self.fresh_network(generator), generator)
        self.step_images(loss)
        return {"loss": loss.item() / self.synthetic.num_classes}
