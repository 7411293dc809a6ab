"""What every condensation method shares: the two sets, a factory of fresh networks, an image optimiser.

A method is a registered ``Condenser`` subclass; ``iteration(generator)`` performs one outer
iteration of the method, updating ``synthetic.images`` in place, and returns the numbers to log.
Options are keyword arguments checked against the class's ``defaults`` (an unknown or
ill-typed option is a ``ConfigError``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from distill.errors import ConfigError, closest
from distill.registry import Registry
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet

#: name → condenser class (or factory); ``CONDENSERS.build(name, synthetic=…, bank=…, network=…, **options)``.
CONDENSERS = Registry("dataset distillation method")


class Condenser:
    """Base of the condensation methods.

    ``network`` builds a freshly initialised network on each call (``build_model`` with fixed
    arguments, say); it is called under a seed drawn from the iteration's generator, so runs
    are reproducible. ``tap`` names the module path whose output is the network's feature vector
    (:mod:`distill.taps`), for the methods that match features; ``"features"`` for the ``*_dd`` models. ``augment`` is optional and duck-typed: an object with
    ``draw(generator) -> draw`` and ``apply(images, draw) -> images`` (the DSA interface), where
    one draw is shared by all images it is applied to.

    Subclasses set ``defaults`` (every option and its default; ``lr`` and ``momentum`` are the
    SGD settings of the image optimiser) and implement ``iteration``.
    """

    #: every option of the method and its default value
    defaults: ClassVar[dict[str, Any]] = {"lr": 0.1, "momentum": 0.5}

    def __init__(self, synthetic: SyntheticSet, bank: ClassBank, network: Callable[[], nn.Module], augment=None,
                 tap: str = "features", **options: Any) -> None:
        name = type(self).__name__
        if synthetic.num_classes != bank.num_classes or tuple(synthetic.images.shape[1:]) != bank.image_shape:
            raise ConfigError(f"{name}: the synthetic set ({synthetic.num_classes} classes of "
                              f"{tuple(synthetic.images.shape[1:])} images) does not fit the real images "
                              f"({bank.num_classes} classes of {bank.image_shape}); build it from the same data.")
        if not callable(network):
            raise ConfigError(f"{name}: network must be a callable returning a fresh nn.Module; got {network!r}.")
        if augment is not None and not (callable(getattr(augment, "draw", None))
                                        and callable(getattr(augment, "apply", None))):
            raise ConfigError(f"{name}: augment must have draw(generator) and apply(images, draw) (e.g. DSA); "
                              f"got {type(augment).__name__}.")
        self.synthetic, self.bank, self.network, self.augment, self.tap = synthetic, bank, network, augment, tap
        self.options = type(self).check_options(options, synthetic.ipc)
        self.optimizer = torch.optim.SGD([synthetic.images], lr=self.options["lr"], momentum=self.options["momentum"])

    @classmethod
    def check_options(cls, options: dict[str, Any], ipc: int | None = None) -> dict[str, Any]:
        """``options`` merged into ``defaults``, checked without building anything (a recipe calls this when it
        loads): unknown names, wrong types, then ``check_values``; ``ipc`` when known."""
        name, defaults = cls.__name__, cls.defaults
        unknown = [key for key in options if key not in defaults]
        if unknown:
            hints = [hint[0] for key in unknown if (hint := closest(key, defaults, n=1))]
            did_you_mean = f" Did you mean {', '.join(map(repr, hints))}?" if hints else ""
            raise ConfigError(f"{name}: unknown option(s) {', '.join(map(repr, unknown))}.{did_you_mean} "
                              f"Valid options: {', '.join(defaults)}.")
        merged = {**defaults, **options}
        for key, value in options.items():
            default = defaults[key]
            if default is None:  # "decided by the method" options: check_values checks them
                continue
            kind = type(default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = merged[key] = float(value)
            if type(value) is not kind:
                raise ConfigError(f"{name}: option {key!r} must be a {kind.__name__}; got {value!r}.")
        cls.check_values(merged, ipc)
        return merged

    @classmethod
    def check_values(cls, options: dict[str, Any], ipc: int | None) -> None:
        """Refuse option values the method cannot use (subclasses extend this)."""
        for key in ("lr", "momentum"):
            if options[key] < 0:
                raise ConfigError(f"{cls.__name__}: {key} must be >= 0; got {options[key]}.")

    def iteration(self, generator: torch.Generator) -> dict[str, float]:
        """One outer iteration: update ``synthetic.images`` in place; return the numbers to log."""
        raise NotImplementedError

    def learned(self) -> dict[str, Tensor]:
        """Every tensor the method learns, by name (what a checkpoint of the condensation stores)."""
        learned = {"images": self.synthetic.images}
        if self.synthetic.soft_labels is not None:
            learned["soft_labels"] = self.synthetic.soft_labels
        return learned

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer of the method, by name (their state goes into a checkpoint too)."""
        return {"images": self.optimizer}

    # -- helpers for the methods ------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.synthetic.images.device

    def fresh_network(self, generator: torch.Generator) -> nn.Module:
        """A newly initialised network (seeded from ``generator``; the global RNG is left as it was), in train mode."""
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = self.network()
        return network.to(self.device).train()

    def real_batch(self, per_class: int, generator: torch.Generator) -> Tensor:
        """``(K, n, C, H, W)`` real images, ``n = min(per_class, smallest class)`` of every class."""
        n = min(per_class, min(len(pool) for pool in self.bank.indices))
        return self.bank.stacked(n, generator).to(self.device)

    def augment_pairs(self, real: Tensor, syn: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """With an augment object, each class's real and synthetic images get one shared draw
        (a fresh draw per class); without one, the images as they are."""
        if self.augment is None:
            return real, syn
        pairs = []
        for real_k, syn_k in zip(real, syn):
            draw = self.augment.draw(generator)
            pairs.append((self.augment.apply(real_k, draw), self.augment.apply(syn_k, draw)))
        return torch.stack([r for r, _ in pairs]), torch.stack([s for _, s in pairs])

    def step_images(self, loss: Tensor) -> None:
        """One optimiser step on the synthetic images down ``loss`` (gradients reach the images only)."""
        (gradient,) = torch.autograd.grad(loss, [self.synthetic.images])
        self.optimizer.zero_grad(set_to_none=True)
        self.synthetic.images.grad = gradient
        self.optimizer.step()
