"""Frozen records: the value classes read at every start (engine/events.py, spec/views.py).

`@dataclasses.dataclass(frozen=True)` writes each method of each class as source and
exec()s it at import: about half a millisecond a class, some 20 ms of every `localrunner`
start for these ~40 classes. `@record` keeps that contract with methods shared by every
record instead of generated ones:
- __init__ takes the fields in declaration order (base classes' first), positionally and by
  name, or by name only (`kw_only=True`); defaults as class values or
  `dataclasses.field(default=...)` / `field(default_factory=...)`;
- __repr__ `Name(a=1, b='x')`, __eq__ over the fields (same class only), __hash__ of them;
- assigning or deleting an attribute raises dataclasses.FrozenInstanceError.
Type checkers see a frozen dataclass (dataclass_transform). Not provided (nothing uses them
on these classes): dataclasses.fields/asdict/replace, __post_init__, __match_args__.
"""
from __future__ import annotations

import dataclasses
import reprlib
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_):
        return lambda fn: fn

T = TypeVar('T', bound=type)
_MISSING = dataclasses.MISSING


class _Layout:
    """A record class's fields: names in __init__ order, how many may be positional, and
    the default (or default factory) of those that have one."""

    def __init__(self, names: tuple, positional: int, defaults: dict, factories: dict):
        self.names, self.positional, self.defaults, self.factories = names, positional, defaults, factories
        self.known = frozenset(names)


class Record:
    """The methods every @record class shares."""
    __slots__ = ()
    _layout: _Layout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        layout = self._layout
        name = type(self).__qualname__
        if len(args) > layout.positional:
            raise TypeError(f'{name}() takes {layout.positional} positional argument(s) but {len(args)} were given')
        values = dict(zip(layout.names, args))
        for key, value in kwargs.items():
            if key not in layout.known:
                raise TypeError(f"{name}() got an unexpected keyword argument '{key}'")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument '{key}'")
            values[key] = value
        missing = []
        for field in layout.names:
            if field in values:
                value = values[field]
            elif field in layout.defaults:
                value = layout.defaults[field]
            elif field in layout.factories:
                value = layout.factories[field]()
            else:
                missing.append(field)
                continue
            object.__setattr__(self, field, value)
        if missing:
            raise TypeError(f'{name}() missing required argument(s): {", ".join(map(repr, missing))}')

    def _values(self) -> tuple:
        return tuple(getattr(self, field) for field in self._layout.names)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        fields = ', '.join(f'{field}={getattr(self, field)!r}' for field in self._layout.names)
        return f'{type(self).__qualname__}({fields})'

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f'cannot assign to field {name!r}')

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f'cannot delete field {name!r}')


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: Optional[T] = None, *, kw_only: bool = False) -> Any:
    """@record or @record(kw_only=True) on a class deriving from Record."""
    def wrap(cls: T) -> T:
        if not issubclass(cls, Record):
            raise TypeError(f'@record: {cls.__qualname__} must derive from records.Record')
        cls._layout = _layout_of(cls, kw_only)
        return cls
    return wrap if cls is None else wrap(cls)


def _layout_of(cls: type, kw_only: bool) -> _Layout:
    """Fields of CLS and its record bases, base classes' first; a field redeclared keeps its
    first place and takes the new default (as dataclasses do)."""
    inherited = getattr(cls, '_layout', None)
    names = list(inherited.names) if inherited else []
    defaults = dict(inherited.defaults) if inherited else {}
    factories = dict(inherited.factories) if inherited else {}
    positional = inherited.positional if inherited else 0
    for field, annotation in cls.__dict__.get('__annotations__', {}).items():
        if str(annotation).startswith(('ClassVar', 'typing.ClassVar')):
            continue
        default: Any = cls.__dict__.get(field, _MISSING)
        factory: Callable[[], Any] | Any = _MISSING
        if isinstance(default, dataclasses.Field):
            default, factory = default.default, default.default_factory
            if default is _MISSING:
                delattr(cls, field)            # a factory's value is the instance's alone
            else:
                setattr(cls, field, default)   # the class attribute is the plain default, as in dataclasses
        defaults.pop(field, None)
        factories.pop(field, None)
        if default is not _MISSING:
            defaults[field] = default
        elif factory is not _MISSING:
            factories[field] = factory
        elif not kw_only and any(n in defaults or n in factories for n in names[:positional]):
            raise TypeError(f'{cls.__qualname__}: non-default argument {field!r} follows default argument')
        if field not in names:
            names.append(field)
            if not kw_only:
                if positional != len(names) - 1:
                    raise TypeError(f'{cls.__qualname__}: positional field {field!r} follows keyword-only fields')
                positional += 1
    return _Layout(tuple(names), positional, defaults, factories)
