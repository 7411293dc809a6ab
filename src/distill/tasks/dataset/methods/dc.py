"""Gradient matching: Dataset Condensation (DC, Zhao, Mopuri & Bilen, ICLR 2021) and, with an
augmentation, Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021).

Each outer iteration takes a freshly initialised network and alternates ``outer_loop`` times:
match, class by class, the gradient of the loss on a real batch with the gradient on the
class's synthetic images (``gradient_distance``), take one SGD step on the images for the sum
over classes; then (except after the last match) train the network ``inner_loop`` epochs on
the synthetic set.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from distill.errors import ConfigError, check_int
from distill.tasks.dataset.matching import class_gradients, gradient_distance
from distill.tasks.dataset.methods.base import CONDENSERS, Condenser

#: (outer_loop, inner_loop) per images-per-class, the reference's ``get_loops``
LOOPS: dict[int, tuple[int, int]] = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def get_loops(ipc: int) -> tuple[int, int]:
    """The reference's (outer_loop, inner_loop) for ``ipc`` images per class; other values are refused."""
    if ipc not in LOOPS:
        raise ConfigError(f"gradient matching has no default loops for ipc={ipc} "
                          f"(known: {', '.join(map(str, LOOPS))}); set the options outer_loop and inner_loop.")
    return LOOPS[ipc]


@CONDENSERS.register("dc")
class GradientMatching(Condenser):
    """Gradient matching (DC, Zhao et al., ICLR 2021); DSA (Zhao & Bilen, ICML 2021) with an augment object.

    Options: ``lr`` (0.1) and ``momentum`` (0.5) of the SGD on the images; ``real_per_class``
    real images per class and match (256); ``outer_loop``/``inner_loop`` (by ipc as the
    reference's ``get_loops`` when unset); ``lr_net`` (0.01, SGD without momentum) and
    ``batch_train`` (256) of the network's training on the synthetic set; ``gradients``: how
    per-class gradients are computed, "auto" (vmap for the synthetic side, a loop for the real
    side: the faster of each on CPU), "vmap" or "loop".

    With ``augment``, a class's real batch and synthetic images share one draw per match
    (Siamese augmentation), and each batch of the network's training gets its own draw.
    """

    defaults: ClassVar[dict[str, Any]] = {"lr": 0.1, "momentum": 0.5, "real_per_class": 256, "outer_loop": None,
                                          "inner_loop": None, "lr_net": 0.01, "batch_train": 256, "gradients": "auto"}

    def __init__(self, synthetic, bank, network, augment=None, **options: Any) -> None:
        super().__init__(synthetic, bank, network, augment, **options)
        if self.options["outer_loop"] is None:
            self.options["outer_loop"], self.options["inner_loop"] = get_loops(synthetic.ipc)

    @classmethod
    def check_values(cls, options: dict[str, Any], ipc: int | None) -> None:
        super().check_values(options, ipc)
        if (options["outer_loop"] is None) != (options["inner_loop"] is None):
            raise ConfigError("GradientMatching: set both outer_loop and inner_loop, or neither "
                              "(then they follow ipc).")
        if options["outer_loop"] is None and ipc is not None:
            get_loops(ipc)
        for key, least in (("outer_loop", 1), ("inner_loop", 0), ("real_per_class", 1), ("batch_train", 1)):
            if options[key] is not None:
                check_int(f"GradientMatching: {key}", options[key], least)
        if options["gradients"] not in ("auto", "vmap", "loop"):
            raise ConfigError(f"GradientMatching: gradients must be 'auto', 'vmap' or 'loop'; "
                              f"got {options['gradients']!r}.")
        if options["lr_net"] < 0:
            raise ConfigError(f"GradientMatching: lr_net must be >= 0; got {options['lr_net']}.")

    def _method(self, synthetic_side: bool) -> str:
        choice = self.options["gradients"]
        return choice if choice != "auto" else ("vmap" if synthetic_side else "loop")

    def matching_loss(self, network: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        """Σ_classes gradient_distance(synthetic-image gradient, real-batch gradient) for ``network``
        on a fresh real batch (differentiable w.r.t. the synthetic images)."""
        real, syn = self.augment_pairs(self.real_batch(self.options["real_per_class"], generator),
                                       self.synthetic.per_class(), generator)
        g_real = class_gradients(network, real, method=self._method(False))
        g_syn = class_gradients(network, syn, create_graph=True, method=self._method(True))
        return gradient_distance(g_syn, g_real, stacked=True)

    def iteration(self, generator: torch.Generator) -> dict[str, float]:
        """One outer iteration on a fresh network; ``loss`` is the matching loss per class, averaged over the
        outer loop (as the reference logs it), ``network_loss`` the last training loss of the network."""
        network, opts = self.fresh_network(generator), self.options
        net_optimizer = torch.optim.SGD(network.parameters(), lr=opts["lr_net"])
        total, network_loss = 0.0, float("nan")
        for step in range(opts["outer_loop"]):
            loss = self.matching_loss(network, generator)
            self.step_images(loss)
            total += loss.item()
            if step == opts["outer_loop"] - 1:
                break
            network_loss = self._train_network(network, net_optimizer, generator)
        return {"loss": total / (self.synthetic.num_classes * opts["outer_loop"]), "network_loss": network_loss}

    def _train_network(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       generator: torch.Generator) -> float:
        """``inner_loop`` epochs of shuffled mini-batches of the (detached) synthetic set; the last batch's loss."""
        images, labels = self.synthetic.images.detach(), self.synthetic.labels
        loss = torch.tensor(float("nan"))
        for _ in range(self.options["inner_loop"]):
            order = torch.randperm(len(images), generator=generator).to(images.device)
            for batch in order.split(self.options["batch_train"]):
                x = images[batch]
                if self.augment is not None:
                    x = self.augment.apply(x, self.augment.draw(generator))
                loss = F.cross_entropy(network(x), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return loss.item()


@CONDENSERS.register("dsa")
class SiameseGradientMatching(GradientMatching):
    """Gradient matching with differentiable Siamese augmentation (DSA, Zhao & Bilen, ICML 2021): "dc" that
    requires an augment object."""

    def __init__(self, synthetic, bank, network, augment=None, **options: Any) -> None:
        if augment is None:
            raise ConfigError("dsa needs an augment object (e.g. DSA from distill.tasks.dataset.augment); "
                              "without augmentation use 'dc'.")
        super().__init__(synthetic, bank, network, augment, **options)
