"""quick_init: the same construction as dataclasses' own ``__init__``, frozen as before."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from papo.events import Ack, Message, Say
from papo.frozen import quick_init
from papo.store_records import Stored

QUICK: list[type[Any]] = [Stored, Message, Say, Ack]


def as_dataclasses_made_it(cls: type[Any]) -> type[Any]:
    """The same fields in a dataclass that keeps the ``__init__`` dataclasses generate."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


@pytest.mark.parametrize("cls", QUICK)
def test_the_parameters_and_what_they_build_are_dataclasses_own(cls: type[Any]) -> None:
    reference = as_dataclasses_made_it(cls)
    assert inspect.signature(cls.__init__) == inspect.signature(reference.__init__)
    names = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    values = {name: f"v-{name}" for name in names}
    for given in (required, names, names[: len(required) + 2]):
        args = [values[name] for name in given]
        assert dataclasses.astuple(cls(*args)) == dataclasses.astuple(reference(*args))
        kwargs = {name: values[name] for name in given}
        assert dataclasses.astuple(cls(**kwargs)) == dataclasses.astuple(reference(**kwargs))
    with pytest.raises(TypeError):
        cls(*[values[name] for name in required[:-1]])  # one missing
    with pytest.raises(TypeError):
        cls(*[values[name] for name in required], nonsense=1)


@pytest.mark.parametrize("cls", QUICK)
def test_instances_stay_frozen_equal_and_hashable(cls: type[Any]) -> None:
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    one, two = cls(*required), cls(*required)
    assert one == two and hash(one) == hash(two)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(one, required[0], "changed")


def test_only_plain_frozen_dataclasses_are_given_one() -> None:
    @dataclasses.dataclass(slots=True)
    class Open:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (Open, Factory, NoSlots):
        with pytest.raises(TypeError):
            quick_init(cls)
