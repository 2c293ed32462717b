"""engine/collector.py: the garbage collector's settings during a run, and after it."""
import gc
import weakref

from kfp import dsl

from localrunner.api import run_pipeline
from localrunner.engine import collector
from tests.helpers import compile_pipeline


def test_a_run_freezes_what_existed_and_puts_everything_back():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with collector.during_a_run():
        assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD and gc.get_threshold()[1:] == before[1:]
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with collector.during_a_run():                  # another run of the process, meanwhile
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen and gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_process_that_froze_its_own_objects_keeps_its_freeze():
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        with collector.during_a_run():
            assert gc.get_freeze_count() == mine
        assert gc.get_freeze_count() == mine
    finally:
        gc.unfreeze()


class _Node:
    pass


def test_cyclic_garbage_made_during_a_run_is_still_collected():
    with collector.during_a_run():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        alive = [[] for _ in range(3 * collector.YOUNG_THRESHOLD)]     # allocations: passes run
        assert gone() is None
        del alive


@dsl.container_component
def noop():
    return dsl.ContainerSpec(image='busybox', command=['true'])


@dsl.pipeline(name='collector')
def noop_pipeline():
    noop()


def test_a_real_run_leaves_the_collector_as_it_found_it(tmp_path):
    before = gc.get_threshold()
    result = run_pipeline(compile_pipeline(noop_pipeline, tmp_path / 'p.yaml'), root=str(tmp_path / 'root'))
    assert result.state.value == 'SUCCEEDED'
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
