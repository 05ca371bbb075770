"""``@frozen_record``: an immutable dataclass whose methods are shared, not generated per class.

Why: ``@dataclass(frozen=True)`` writes the source of ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` for each class and compiles each with ``exec`` when the class is
defined: about 1 ms per class on CPython 3.11 here, and a warm ``adapterhub pull`` defines 25 such records
(the manifest model, index entries, view records...), which was a third of its whole run
(``benchmarks/results/store.md``). A record is the same dataclass, made by :func:`dataclasses.dataclass`
itself, with its field handling (defaults, ``field(default_factory=..., compare=..., hash=..., repr=...)``,
inheritance, ``__match_args__``), so :func:`dataclasses.fields`, :func:`~dataclasses.replace`,
:func:`~dataclasses.asdict` and :func:`~dataclasses.is_dataclass` work as before. Only the six methods come
from here, as functions compiled once with this module and driven by the field list. They behave as the
generated ones (``tests/base/test_records.py`` checks each against ``@dataclass(frozen=True)``): keyword or
positional arguments, defaults, ``__post_init__``; equality only between instances of the same class,
comparing the ``compare`` fields as a tuple; the hash of those fields (``hash=`` respected); ``repr`` of the
``repr`` fields; :class:`dataclasses.FrozenInstanceError` on assignment or deletion. What differs:
``__dataclass_params__`` describes what :func:`dataclasses.dataclass` generated (nothing), and
``inspect.signature`` of the class shows ``(*args, **kwargs)``; keyword-only and ``InitVar`` fields are
refused (none is used). Type checkers see the dataclass through :func:`typing.dataclass_transform`.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

try:
    from typing import dataclass_transform
except ImportError:  # Python 3.10: only type checkers read it, so nothing is lost at run time
    def dataclass_transform(**_: Any) -> Callable[[T], T]:  # type: ignore[no-redef]
        return lambda decorated: decorated

T = TypeVar("T", bound=type)

MISSING = dataclasses.MISSING


class RecordLayout:
    """What the shared methods of one record class need, computed once from its dataclass fields."""

    def __init__(self, cls: type) -> None:
        fields = dataclasses.fields(cls)
        self.name = cls.__name__
        self.init = tuple(f.name for f in fields if f.init)
        self.position = {name: i for i, name in enumerate(self.init)}
        self.defaults = {f.name: f.default for f in fields if f.default is not MISSING}
        self.factories: dict[str, Callable[[], Any]] = {
            f.name: f.default_factory for f in fields if f.default_factory is not MISSING}  # type: ignore[misc]
        self.not_init = tuple(f.name for f in fields if not f.init)
        self.field_names = frozenset(f.name for f in fields)
        self.compare = values_of(tuple(f.name for f in fields if f.compare))
        self.hashed = values_of(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
        self.shown = tuple(f.name for f in fields if f.repr)
        self.post_init = getattr(cls, "__post_init__", None)

    def default(self, name: str) -> Any:
        if name in self.defaults:
            return self.defaults[name]
        return self.factories[name]()


def values_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of these attributes of an object (always a tuple, even for one name)."""
    if not names:
        return lambda _obj: ()
    get = attrgetter(*names)
    return (lambda obj: (get(obj),)) if len(names) == 1 else get


def record_init(self: Any, *args: Any, **kwargs: Any) -> None:
    layout: RecordLayout = type(self).__record_layout__
    names = layout.init
    given = len(args)
    if given > len(names):
        raise TypeError(f"{layout.name}.__init__() takes {len(names) + 1} positional arguments but "
                        f"{given + 1} were given")
    for key in kwargs:
        if key not in layout.position:
            raise TypeError(f"{layout.name}.__init__() got an unexpected keyword argument {key!r}")
        if layout.position[key] < given:
            raise TypeError(f"{layout.name}.__init__() got multiple values for argument {key!r}")
    setter = object.__setattr__
    for name, value in zip(names, args, strict=False):  # the first `given` fields
        setter(self, name, value)
    missing = []
    for name in names[given:]:
        if name in kwargs:
            setter(self, name, kwargs[name])
        elif name in layout.defaults:
            setter(self, name, layout.defaults[name])
        elif name in layout.factories:
            setter(self, name, layout.factories[name]())
        else:
            missing.append(name)
    if missing:
        raise TypeError(f"{layout.name}.__init__() missing {len(missing)} required argument(s): "
                        + ", ".join(repr(n) for n in missing))
    for name in layout.not_init:
        if name in layout.defaults or name in layout.factories:
            setter(self, name, layout.default(name))
    if layout.post_init is not None:
        layout.post_init(self)


@reprlib.recursive_repr()
def record_repr(self: Any) -> str:
    layout: RecordLayout = type(self).__record_layout__
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in layout.shown)
    return f"{type(self).__qualname__}({shown})"


def record_eq(self: Any, other: Any) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    compare = type(self).__record_layout__.compare
    return compare(self) == compare(other)


def record_hash(self: Any) -> int:
    return hash(type(self).__record_layout__.hashed(self))


def record_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def record_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


SHARED_METHODS = {"__init__": record_init, "__repr__": record_repr, "__eq__": record_eq, "__hash__": record_hash,
                  "__setattr__": record_setattr, "__delattr__": record_delattr}


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen_record(cls: T) -> T:
    """Make ``cls`` an immutable dataclass with shared methods (see the module docstring).

    A class that defines one of the six methods itself keeps its own, as with ``@dataclass``.
    """
    if not cls.__doc__:
        raise TypeError(f"{cls.__name__}: a record needs a docstring (dataclasses would compute a signature for one)")
    own = {name for name in SHARED_METHODS if name in cls.__dict__ and not (name == "__hash__" and
                                                                            cls.__dict__[name] is None)}
    cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    special = [f.name for f in cls.__dataclass_fields__.values()
               if getattr(f, "kw_only", False) is True or "InitVar" in str(f.type)]
    if special:
        raise TypeError(f"{cls.__name__}: keyword-only and InitVar fields are not supported by records: {special}")
    cls.__record_layout__ = RecordLayout(cls)
    for name, method in SHARED_METHODS.items():
        if name not in own:
            setattr(cls, name, method)
    return cls


__all__ = ["frozen_record"]
