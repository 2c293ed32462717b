"""records.py: the frozen-dataclass contract the events and views rely on, checked side by
side with @dataclasses.dataclass(frozen=True) on the same class bodies."""
import copy
import dataclasses
import pickle
import time

import pytest

from localrunner.engine import events as ev
from localrunner.records import Record, record
from localrunner.spec.views import Loop


def _pair(kw_only: bool = False):
    """The same two classes (a base and a child) as records and as frozen dataclasses."""
    made = []
    for deco, base in ((record(kw_only=kw_only), Record), (dataclasses.dataclass(frozen=True, kw_only=kw_only), object)):
        @deco
        class Base(base):
            name: str
            size: int = 0
            tags: tuple = ()
            stamp: float = dataclasses.field(default_factory=time.monotonic)
            items: dict = dataclasses.field(default_factory=dict)

        if kw_only:
            @deco
            class Child(Base):
                extra: str
                size: int = 7
        else:
            Child = None
        made.append((Base, Child))
    return made


def test_init_defaults_factories_repr_eq_hash_as_a_frozen_dataclass():
    (rec, _), (dc, _) = _pair()
    for cls in (rec, dc):
        a = cls('x', 2, tags=('t',), stamp=1.0)
        assert (a.name, a.size, a.tags, a.stamp, a.items) == ('x', 2, ('t',), 1.0, {})
        assert repr(a) == f"{cls.__qualname__}(name='x', size=2, tags=('t',), stamp=1.0, items={{}})"
        assert a == cls('x', 2, ('t',), 1.0, {}) and a != cls('y', 2, ('t',), 1.0, {})
        assert cls('x').items is not cls('x').items                    # a factory runs per instance
        assert cls.size == 0 and not hasattr(cls, 'items')           # class attributes as dataclasses leave them
        b = cls('x', 2, tags=('t',), stamp=1.0, items=None)
        assert hash(b) == hash(cls('x', 2, ('t',), 1.0, None))
    assert rec('x', 1, stamp=0.0, items=None) != dc('x', 1, stamp=0.0, items=None)   # another class


def test_records_pickle_and_copy():
    loop = Loop(over_artifacts=False, item_input='item', raw_items='[1, 2]', parallelism=2)
    failed = ev.TaskFailed(task='a/b', error='boom', log_tail=('x',))
    for value in (loop, failed):
        assert pickle.loads(pickle.dumps(value)) == value == copy.deepcopy(value)


def test_assignment_and_deletion_raise_frozen_instance_error():
    (rec, _), _ = _pair()
    a = rec('x')
    for act in (lambda: setattr(a, 'name', 'y'), lambda: setattr(a, 'new', 1), lambda: delattr(a, 'name')):
        with pytest.raises(dataclasses.FrozenInstanceError):
            act()
    assert a.name == 'x' and not hasattr(a, 'new')


@pytest.mark.parametrize('args, kwargs', [((), {}), (('x', 1, (), 0.0, {}, 'extra'), {}), (('x',), {'name': 'y'}),
                                          (('x',), {'nope': 1})])
def test_bad_arguments_are_type_errors_as_with_dataclasses(args, kwargs):
    (rec, _), (dc, _) = _pair()
    for cls in (rec, dc):
        with pytest.raises(TypeError):
            cls(*args, **kwargs)


def test_kw_only_and_inherited_fields():
    (rec, rec_child), (dc, dc_child) = _pair(kw_only=True)
    for cls, child in ((rec, rec_child), (dc, dc_child)):
        with pytest.raises(TypeError):
            cls('x')                                                   # by name only
        c = child(name='n', extra='e', stamp=0.0)
        assert (c.name, c.size, c.extra) == ('n', 7, 'e')              # a redeclared default wins, its place kept
        assert repr(c).endswith("(name='n', size=7, tags=(), stamp=0.0, items={}, extra='e')")
        with pytest.raises(TypeError):
            child(name='n')                                            # extra is required


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError):
        @record
        class Bad(Record):
            a: int = 0
            b: int
