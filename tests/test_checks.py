"""The shared argument checks (in distill.errors) and the one pre-flight check of a registered method."""

import math

import pytest

from distill.errors import (
    ConfigError,
    DistillError,
    check_count,
    check_fraction,
    check_int,
    check_positive,
    positive_ints,
)


def test_integers_refuse_bools_floats_and_small_values():
    assert check_int("epochs", 3) == 3 and check_int("transfer_size", 0, least=0) == 0
    assert check_count("batch_size", 1) == 1
    for bad in (True, False, 2.0, "3", None, 0, -1):
        with pytest.raises(ConfigError, match=r"^batch_size must be a positive integer, got "):
            check_count("batch_size", bad)
    for bad in (True, 1.0, 1):
        with pytest.raises(ConfigError, match=r"^num_classes must be an integer >= 2, got "):
            check_int("num_classes", bad, least=2)
    assert positive_ints([1, 2, 3]) and not positive_ints([1, True]) and not positive_ints([0]) and positive_ints([])


def test_positive_numbers():
    assert check_positive("temperature", 2) == 2.0 and isinstance(check_positive("lr", 1), float)
    for bad in (0, -0.5, math.nan, True, "1", None):
        with pytest.raises(ConfigError, match=r"^temperature must be > 0, got "):
            check_positive("temperature", bad)


def test_fractions_name_the_argument_the_interval_and_the_meaning():
    assert check_fraction("alpha", 0) == 0.0 and check_fraction("alpha", 1) == 1.0
    assert check_fraction("decay", 0.0, open_right=True) == 0.0
    with pytest.raises(ConfigError, match=r"^alpha must lie in \[0, 1\] \(the weight of the soft term\), got 1.5"):
        check_fraction("alpha", 1.5, "the weight of the soft term")
    with pytest.raises(ConfigError, match=r"^decay must lie in \[0, 1\), got 1.0"):
        check_fraction("decay", 1.0, open_right=True)
    with pytest.raises(ConfigError, match=r"^share must lie in \(0, 1\), got 0"):
        check_fraction("share", 0, open_left=True, open_right=True)
    for bad in (True, math.nan, "0.5", -0.1):
        with pytest.raises(ConfigError, match="must lie in"):
            check_fraction("beta", bad)


def test_errors_are_user_errors():
    with pytest.raises(DistillError):
        check_count("n", 0)


def _registry():
    from distill.registry import Registry

    registry = Registry("test method")
    built = []

    @registry.register("plain")
    class Plain:
        def __init__(self, steps: int = 1) -> None:
            built.append(self)
            check_count("plain: steps", steps)

    @registry.register("needs_data")
    class NeedsData:
        checked = []

        def __init__(self, images, **options) -> None:
            raise AssertionError("a pre-flight check must not build a method that needs data")

        @classmethod
        def check_options(cls, options, ipc=None):
            cls.checked.append((options, ipc))
            check_int("needs_data option ipc", ipc)

    return registry, built, NeedsData


def test_one_pre_flight_check_for_every_registered_method():
    """Registry.check: the name, the option names (by signature) and the values (by the method's own
    code, raising ConfigError), keeping nothing; a method needing data answers through check_options."""
    registry, built, needs_data = _registry()
    registry.check("plain", {"steps": 2})
    with pytest.raises(DistillError, match="Did you mean 'plain'"):
        registry.check("plian", {})
    with pytest.raises(ConfigError, match="Did you mean 'steps'"):
        registry.check("plain", {"stesp": 2})
    with pytest.raises(ConfigError, match="plain: steps must be a positive integer, got 0"):
        registry.check("plain", {"steps": 0})
    registry.check("needs_data", {"lr": 1.0}, ipc=10)
    assert needs_data.checked == [({"lr": 1.0}, 10)]
    with pytest.raises(ConfigError, match="needs_data option ipc must be an integer >= 1, got 0"):
        registry.check("needs_data", {}, ipc=0)


def test_every_recipe_checks_its_method_through_the_registry():
    """The same error shape from every family's recipe: the section, the bad name and the valid choices."""
    from distill.experiment.recipe import check_registered

    registry, _, _ = _registry()
    with pytest.raises(ValueError, match="unknown test method 'plian'.*Valid choices: needs_data, plain"):
        check_registered(registry, "plian", {})
