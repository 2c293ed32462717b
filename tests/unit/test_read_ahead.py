"""TaskCache.reading_ahead and Run.in_batch(looks_up=): a stage's cache lookups read the
action index once per hop (one statement) instead of once per task, with the same answers."""
import pytest
from kfp import dsl

from localrunner.api import run_pipeline
from localrunner.engine.caching import CacheSettings, TaskCache
from localrunner_cache import ActionResult
from localrunner_cache.index import Index
from tests.helpers import compile_pipeline


@pytest.fixture
def cache(tmp_path):
    c = TaskCache(str(tmp_path / 'root'), CacheSettings(), run_id='r1')
    yield c
    c.close()


@pytest.fixture
def single_reads(monkeypatch):
    """The keys read one at a time from any action index (Index.get), in order."""
    reads = []
    get = Index.get

    def counting(self, key):
        if self.name == 'actions':
            reads.append(key)
        return get(self, key)
    monkeypatch.setattr(Index, 'get', counting)
    return reads


def _store(cache, key, value):
    digest = cache.cas.put_bytes(value.encode())
    cache.record(key, {'k': key}, {'parameters': {'v': value}}, {digest}, {'run': 'r0'})


def test_lookups_read_ahead_answer_as_lookups_one_by_one(cache, single_reads):
    for i in range(40):
        _store(cache, f'k{i}', f'value {i}')
    asked = [f'k{i}' for i in range(0, 60, 3)]          # some stored, some not
    alone = {k: cache.lookup(k) for k in asked}
    assert len(single_reads) == len(asked)
    single_reads.clear()
    with cache.reading_ahead(asked):
        ahead = {k: cache.lookup(k) for k in asked}
    assert ahead == alone and sum(v is not None for v in ahead.values()) == 14
    assert single_reads == [], 'every key asked was read in the one statement on entry'
    assert cache.lookup('k3') == alone['k3'] and single_reads == ['k3'], 'after the block: read again'


def test_an_entry_recorded_within_is_read_again(cache, single_reads):
    with cache.reading_ahead(['new', 'other']):
        assert cache.lookup('new') is None
        _store(cache, 'new', 'made meanwhile')
        hit = cache.lookup('new')
        assert cache.lookup('other') is None
    assert hit is not None and hit.outputs == {'parameters': {'v': 'made meanwhile'}}
    assert single_reads == ['new']


def test_a_rejected_entry_is_dropped_once(cache):
    _store(cache, 'k', 'x')
    contract = {'parameters': {'v': 'NUMBER_INTEGER'}}     # the entry's 'x' is not one
    with cache.reading_ahead(['k', 'k']):
        assert cache.lookup('k', contract) is None
        assert cache.lookup('k', contract) is None
    assert len([w for w in cache.drain_warnings() if 'rejected' in w]) == 1
    assert cache.actions.get('k') is None


def test_an_unreadable_entry_read_ahead_is_a_miss_with_a_warning(cache):
    _store(cache, 'good', 'g')
    cache.actions._index.set('bad', '{not json')
    with cache.reading_ahead(['good', 'bad']):
        assert cache.lookup('bad') is None
        assert cache.lookup('good').outputs == {'parameters': {'v': 'g'}}
    assert any('unreadable' in w for w in cache.drain_warnings())
    assert cache.actions._index.get('bad') is None


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.pipeline(name='read-ahead-fan')
def fan():
    with dsl.ParallelFor(list(range(12))) as i:
        square(x=i)


def test_a_cached_stage_reads_no_entry_one_by_one(tmp_path, single_reads):
    path = compile_pipeline(fan, tmp_path / 'fan.yaml')
    root = str(tmp_path / 'root')
    first = run_pipeline(path, root=root)
    assert first.state.value == 'SUCCEEDED'
    single_reads.clear()
    second = run_pipeline(path, root=root)
    squares = [r for r in second.records if r.kind == 'container']
    assert [r.state.value for r in squares] == ['CACHED'] * 12
    assert sorted(r.outputs.parameters['Output'] for r in squares) == [i * i for i in range(12)]
    assert single_reads == [], 'the stage\'s 12 lookups were read ahead, in one hop\'s statement'
