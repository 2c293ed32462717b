"""The committed case pipelines are the kfp SDK's own compiler output for our sources
(tests/conformance/sources/*.py), edits included: recompile everything with the installed SDK
(one process per compile env) and compare byte for byte."""
import pytest

from tests.conformance import build


@pytest.fixture(scope='module')
def compiled():
    return build.compile_all()


def test_committed_pipelines_equal_the_compiler_output(compiled):
    problems = build.differences(compiled)
    assert not problems, '\n'.join(problems) + '\n(regenerate: python -m tests.conformance.build)'


def test_every_case_has_a_source_and_every_source_a_case(compiled):
    assert not build.orphans(compiled), build.orphans(compiled)


def test_the_comparison_sees_a_changed_file(compiled):
    """The check above can fail: one changed character in a compiler output is reported."""
    target = 'caching_forms/pipeline.yaml'
    changed = dict(compiled, **{target: compiled[target].replace('enableCache: true', 'enableCache: false', 1)})
    problems = build.differences(changed)
    assert len(problems) == 1 and problems[0].startswith(target) and 'enableCache: false' in problems[0]


def test_the_compile_env_reaches_the_sdk(compiled):
    """KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT only works at SDK import: the case compiled with it
    has no task with caching on but the one that asked explicitly."""
    text = compiled['caching_disabled_by_default_compiled/pipeline.yaml']
    assert text.count('enableCache: true') == 1 and text.count('cachingOptions: {}') == 4


def test_an_edit_that_no_longer_matches_fails_loudly():
    with pytest.raises(ValueError, match='edit expects 1 occurrence'):
        build.apply_edits('image: alpine:3.19\n', (build.Replace('image: alpine:3.18', 'x'),), 'case/pipeline.yaml')
    with pytest.raises(ValueError, match='compiler output has 2'):
        build.apply_edits('a a', (build.Replace('a', 'b'),), 'case/pipeline.yaml')
    assert build.apply_edits('a b', (build.Replace('a', 'c'),), 'x') == 'c b'
