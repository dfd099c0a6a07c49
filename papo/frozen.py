"""A quicker ``__init__`` for the frozen dataclasses built once per message.

A frozen dataclass's generated ``__init__`` sets every field with
``object.__setattr__`` (the class's own refuses): a lookup of ``__setattr__``
on ``object`` and a call through the generic attribute machinery per field,
2.7 µs for the fifteen fields of a :class:`~papo.store_records.Stored` on a shared
core. The slot's own descriptor, which ``object.__setattr__`` ends up calling,
does the same set for a third of that when called directly.

:func:`quick_init` gives a class such an ``__init__``: the same parameters
and defaults as the one dataclasses made (checked by the tests), every field
set through its slot. Nothing else changes: the instances are as frozen as
before (``__setattr__`` still refuses), equal, hashed and printed the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound=type[Any])


def quick_init(cls: C) -> C:
    """Give ``cls`` (a frozen dataclass with slots) an ``__init__`` that sets its slots directly.

    Only for the plain case: fields with constant defaults or none, no
    ``__post_init__``, no keyword-only or init-less field.
    """
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} needs slots and no __post_init__")
    names: dict[str, Any] = {}
    signature, body = [], []
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields")
        if f.default is dataclasses.MISSING:
            signature.append(f.name)
        else:
            names[f"_default_{f.name}"] = f.default
            signature.append(f"{f.name}=_default_{f.name}")
        names[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's descriptor
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"])
    exec(source, names)  # as dataclasses makes its own __init__
    init = names["__init__"]
    init.__annotations__ = {f.name: f.type for f in dataclasses.fields(cls)} | {"return": None}
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
