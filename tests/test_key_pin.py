"""Action keys are pinned: tests/data/key_pin.yaml (compiled once by kfp 2.17.3 and kept as
written, so a compiler upgrade cannot move the pin) is run for real, and every task's key must
be the one the engine computed before the engine read the IR through typed views
(spec/views.py). A key that moves orphans every cache entry users have: a change that moves one
must be deliberate (caching.KEY_SCHEMA_VERSION) and re-pin here.

The pipeline covers every IR fragment a key reads: a container's image, command, args, env and
declared outputs (parameter and artifact), an accelerator, a custom cacheKey (the component's
interface and command), an importer's artifact (its type, metadata and content digest) and
outputs of upstream tasks as inputs."""
import os
import sys

import pytest

from localrunner.api import run_pipeline

PIPELINE = os.path.join(os.path.dirname(__file__), 'data', 'key_pin.yaml')

# computed on main (907064e) before the switch to typed views
PINNED = {
    'emit': 'e28a67737376ff76ef5afabb142f605c',
    'emit-2': '32ad4a839592ca629e5026f5cc749cf9',
    'upper': '8b8799f37a91620b677465669e260f86',
    'upper-2': '5b5f255a359846a36070d9f07d6f23f0',
}

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason="a container component's environment on the host is 'host:<OS>'")


def _keys(result) -> dict:
    return {r.name: r.cache_key for r in result.records if r.kind == 'container'}


def test_keys_are_the_pinned_ones_and_serve_the_second_run(tmp_path):
    source = tmp_path / 'source.txt'
    source.write_text('pinned bytes\n')
    params = {'source': str(source), 'word': 'hello', 'times': 3}
    root = str(tmp_path / 'root')
    first = run_pipeline(PIPELINE, params, root=root)
    assert first.state.value == 'SUCCEEDED', [(r.name, r.state.value, r.error) for r in first.records]
    assert _keys(first) == PINNED
    second = run_pipeline(PIPELINE, params, root=root)
    assert {r.name: r.state.value for r in second.records if r.kind == 'container'} == dict.fromkeys(PINNED, 'CACHED')
    assert _keys(second) == PINNED
