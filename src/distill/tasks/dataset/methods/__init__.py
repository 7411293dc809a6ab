"""The condensation methods; importing this package registers each one in ``CONDENSERS``."""

from distill.tasks.dataset.methods import dc as _dc  # noqa: F401
from distill.tasks.dataset.methods import dm as _dm  # noqa: F401
from distill.tasks.dataset.methods import mtt as _mtt  # noqa: F401
from distill.tasks.dataset.methods.base import CONDENSERS, Condenser

__all__ = ["CONDENSERS", "Condenser"]
