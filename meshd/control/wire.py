"""The typed records of the control socket (pure): :class:`Wire`, a frozen record of typed
fields that every request and answer of :mod:`meshd.control.commands` is.

A Wire type is declared like a frozen dataclass (mypy checks it as one); :func:`field` gives a
field a default and metadata, :func:`fields` lists a type's fields in declaration order. The
metadata :mod:`meshd.control.typed_json` reads: ``omit_if_none`` (:data:`OMIT`) leaves a None
out of the JSON, ``local`` keeps a field off the wire altogether.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

OMIT: Final = {"omit_if_none": True}
"""Field metadata: left out of the JSON when None (a column that only some daemons fill)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Field:
    """One field of a :class:`Wire` type: its name, default and metadata."""

    __slots__ = ("default", "metadata", "name")

    def __init__(self, name: str, default: Any, metadata: Mapping[str, Any]) -> None:
        self.name, self.default, self.metadata = name, default, metadata


class _FieldSpec:
    __slots__ = ("default", "metadata")

    def __init__(self, default: Any, metadata: Mapping[str, Any]) -> None:
        self.default, self.metadata = default, metadata


def field(*, default: Any = MISSING, metadata: Mapping[str, Any] | None = None) -> Any:
    """A field's default and metadata, as ``dataclasses.field`` gives them."""
    return _FieldSpec(default, metadata or {})


class FrozenError(AttributeError):
    """A :class:`Wire` value was assigned to: they are immutable."""


@typing.dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(field,))
class Wire:
    """Base of every control request and answer: a frozen record of typed fields, declared
    like a frozen dataclass (mypy checks them as one).

    Not ``@dataclass`` itself: generating the methods of two dozen dataclasses cost the
    commands that only ask the daemon (``meshd peers``, ``status``) 15 ms at every start,
    a fifth of their time; this base builds a type's fields once, by reading its
    annotations, and shares one ``__init__``, ``__eq__`` and ``__repr__``."""

    __slots__ = ()
    _fields: ClassVar[tuple[Field, ...]] = ()

    def __init_subclass__(cls) -> None:
        fields = {f.name: f for f in cls._fields}
        # The class's own annotations (``inspect.get_annotations``, without importing
        # inspect: it costs the quick path several ms at every start).
        for name, hint in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if str(hint).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, MISSING)
            if isinstance(value, _FieldSpec):
                fields[name] = Field(name, value.default, value.metadata)
                delattr(cls, name)
            else:
                fields[name] = Field(name, value, {})
        cls._fields = tuple(fields.values())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = type(self)._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields")
        for f, value in zip(fields, args, strict=False):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}: {f.name} given twice")
            kwargs[f.name] = value
        for f in fields:
            value = kwargs.pop(f.name, f.default)
            if value is MISSING:
                raise TypeError(f"{type(self).__name__}: {f.name} is missing")
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {sorted(kwargs)[0]!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Wire)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"


def fields(value: Wire | type[Wire]) -> tuple[Field, ...]:
    """The fields of a :class:`Wire` type or value, in declaration order."""
    return value._fields


W = TypeVar("W", bound=Wire)


def made(cls: type[W], rows: Iterable[Sequence[Any]]) -> list[W]:
    """``cls(*values)`` for each row of ``values``, every field's value in declaration order,
    without ``__init__``'s handling of its arguments one by one: for values already checked
    against the fields' types (:mod:`meshd.control.rows`)."""
    names = [f.name for f in cls._fields]
    new = object.__new__
    out = []
    for values in rows:
        value = new(cls)
        value.__dict__.update(zip(names, values, strict=True))
        out.append(value)
    return out


def is_wire(value: Any) -> bool:
    """Whether ``value`` is a :class:`Wire` type."""
    return isinstance(value, type) and issubclass(value, Wire)
