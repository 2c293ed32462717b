"""The harness's own rules, on result documents written here, and once end to end: a case whose
expectations are wrong must fail, naming what is wrong (a harness that cannot fail proves
nothing)."""
import json
import os
import shutil

import pytest

from tests.conformance import harness as h


def result(*tasks, state='SUCCEEDED', outputs=None):
    return {'state': state, 'outputs': outputs or {'parameters': {}, 'artifacts': {}},
            'tasks': [dict({'type': 'container', 'outputs': {'parameters': {}, 'artifacts': {}}}, **t) for t in tasks]}


def texts(problems):
    return [str(p) for p in problems]


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize('exp, act', [
    (1, 1.0), (1.5, 1.5), ('a', 'a'), (None, None), (True, True), ([1, {'a': 2}], [1.0, {'a': 2.0}]),
    ({'$oneOf': [1, 'x']}, 'x'), ({'$regex': '^ab+c$'}, 'abbc'), ({'$contains': 'bc'}, 'abcd'),
    ({'$contains': 2}, [1, 2.0]), ({'$type': 'integer'}, 3.0), ({'$type': 'number'}, 3), ({'$type': 'null'}, None),
    ({'$type': 'list'}, []), ({'$len': 2}, [0, 0]), ({'$len': 3}, 'abc'), ({'k': {'$type': 'string'}}, {'k': 'v'}),
])
def test_matches(exp, act):
    assert h.match(exp, act) is None


@pytest.mark.parametrize('exp, act', [
    (True, 1), (1, True), (0, False), (1, '1'), ('1', 1), (None, 0), ([1], [1, 2]), ({'a': 1}, {'a': 1, 'b': 2}),
    ({'$oneOf': [1, 2]}, 3), ({'$regex': '^b'}, 'ab'), ({'$regex': 'x'}, 5), ({'$contains': 'z'}, 'abc'),
    ({'$type': 'integer'}, 1.5), ({'$type': 'boolean'}, 0), ({'$type': 'number'}, True), ({'$len': 2}, [1]),
    ({'$len': 1}, 5), (1.0, 1.001),
])
def test_mismatches(exp, act):
    assert h.match(exp, act)


def test_an_unknown_matcher_is_a_case_error():
    with pytest.raises(h.CaseError):
        h.match({'$nope': 1}, 1)
    with pytest.raises(h.CaseError):
        h.match({'$type': 'float'}, 1.0)


def test_substitute_reaches_keys_and_nested_values():
    assert h.substitute({'$CASE_TMP/a': ['x $CASE_TMP', 1]}, {'$CASE_TMP': '/t'}) == {'/t/a': ['x /t', 1]}


# ---------------------------------------------------------------------------- task states


def test_succeeded_accepts_cached_only_on_the_first_run():
    r = result({'name': 'a', 'state': 'CACHED'})
    want = [{'name': 'a', 'state': 'SUCCEEDED'}]
    assert h.check_tasks(want, r, strict=False, where='') == []
    assert texts(h.check_tasks(want, r, strict=True, where='rerun: ')) == ['rerun: task a: expected SUCCEEDED, got CACHED']
    assert h.check_tasks([{'name': 'a', 'state': 'CACHED'}], result({'name': 'a', 'state': 'SUCCEEDED'}), False, '')


def test_skipped_and_canceled_mean_did_not_run():
    r = result({'name': 'ran', 'state': 'SUCCEEDED'}, {'name': 'skipped', 'state': 'SKIPPED'},
               {'name': 'canceled', 'state': 'CANCELED'})
    for name in ('skipped', 'canceled', 'absent'):
        for want in ('SKIPPED', 'CANCELED'):
            assert h.check_tasks([{'name': name, 'state': want}], r, True, '') == []
    assert texts(h.check_tasks([{'name': 'ran', 'state': 'SKIPPED'}], r, False, '')) == [
        'task ran: must not have run, got SUCCEEDED']


def test_the_last_entry_of_a_name_decides():
    r = result({'name': 'a', 'state': 'FAILED'}, {'name': 'a', 'state': 'SUCCEEDED', 'attempts': 2})
    assert h.check_tasks([{'name': 'a', 'state': 'SUCCEEDED', 'attempts': 2}], r, True, '') == []
    assert h.check_tasks([{'name': 'a', 'state': 'FAILED'}], r, True, '')
    assert h.check_tasks([{'name': 'a', 'state': 'SUCCEEDED', 'attempts': 1}], r, True, '')


def test_a_missing_task_and_task_outputs():
    r = result({'name': 'a', 'state': 'SUCCEEDED', 'outputs': {'parameters': {'Output': 'x'}, 'artifacts': {}}})
    assert h.check_tasks([{'name': 'b', 'state': 'SUCCEEDED'}], r, False, '')
    ok = {'name': 'a', 'state': 'SUCCEEDED', 'outputs': {'parameters': {'Output': {'$regex': 'x'}}}}
    assert h.check_tasks([ok], r, False, '') == []
    bad = {'name': 'a', 'state': 'SUCCEEDED', 'outputs': {'parameters': {'Output': 'y'}}}
    assert h.check_tasks([bad], r, False, '')


def test_run_state_exit_code_and_invalid_input():
    ok = h.RunRecord('first run', [], 0, result(), '', '')
    assert h.check_run({}, ok, False, '') == []
    assert texts(h.check_run({'state': 'FAILED'}, ok, False, '')) == [
        'exit code 0, expected 1', "run state 'SUCCEEDED', expected 'FAILED'"]
    refused = h.RunRecord('first run', [], 2, None, '', "localrunner: error: parameter 'i': 'x' is not a valid int\n")
    assert h.check_run({'state': None, 'message': {'$regex': "'i'"}}, refused, False, '') == []
    assert h.check_run({'state': None, 'message': {'$regex': "'j'"}}, refused, False, '')
    traceback = h.RunRecord('first run', [], 2, None, '', 'Traceback (most recent call last):\n  ...\nError: x\n')
    assert h.check_run({'state': None}, traceback, False, '')


def test_artifact_contents_and_metadata(tmp_path):
    (tmp_path / 'f.txt').write_text('hello')
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'b').write_text('')
    (tmp_path / 'd' / 'a').write_text('')
    outs = {'parameters': {}, 'artifacts': {'x': [
        {'path': str(tmp_path / 'f.txt'), 'metadata': {'n': 1}}, {'path': str(tmp_path / 'd'), 'metadata': {'n': 2}}]}}
    assert h.check_outputs({'artifacts': {'x': {'count': 2, 'contents': ['hello', ['a', 'b']],
                                                'metadata': {'n': {'$type': 'integer'}}}}}, outs, '') == []
    assert h.check_outputs({'artifacts': {'x': {'count': 1}}}, outs, '')
    assert h.check_outputs({'artifacts': {'x': {'contents': ['hello', ['b', 'a']]}}}, outs, '')
    assert h.check_outputs({'artifacts': {'x': {'metadata': {'n': 1}}}}, outs, '')           # [1] has n == 2
    assert h.check_outputs({'artifacts': {'y': {}}}, outs, '')


# ---------------------------------------------------------------------------- comparisons


def _with_output(name, value, state='SUCCEEDED'):
    return {'name': name, 'state': state, 'outputs': {'parameters': {'Output': value}, 'artifacts': {}}}


def test_same_and_differs_compare_with_the_first_run():
    first = result(_with_output('a', 'a-1'), _with_output('b', 'b-1'))
    again = result(_with_output('a', 'a-1'), _with_output('b', 'b-2'))
    assert h.check_comparisons({'same': ['a'], 'differs': ['b']}, again, first, '') == []
    assert len(h.check_comparisons({'same': ['b'], 'differs': ['a']}, again, first, '')) == 2
    with pytest.raises(h.CaseError):
        h.check_comparisons({'same': ['a']}, again, None, '')


def test_a_task_without_outputs_cannot_be_compared():
    r = result({'name': 'a', 'state': 'SUCCEEDED'})
    assert texts(h.check_comparisons({'differs': ['a']}, r, r, '')) == [
        'task a: has no outputs to compare', 'first run: task a: has no outputs to compare']


def test_artifact_digests_take_part_in_comparisons():
    def art(digest):
        return result({'name': 'a', 'state': 'SUCCEEDED',
                       'outputs': {'parameters': {}, 'artifacts': {'out': [{'digest': digest}]}}})
    assert h.check_comparisons({'differs': ['a']}, art('d2'), art('d1'), '') == []
    assert h.check_comparisons({'differs': ['a']}, art('d1'), art('d1'), '')


def test_outputs_equal_and_differ_within_a_run():
    r = result(_with_output('a', 'x'), _with_output('b', 'x'), _with_output('c', 'y'))
    assert h.check_comparisons({'outputs_equal': [['a', 'b']], 'outputs_differ': [['a', 'c']]}, r, None, '') == []
    assert h.check_comparisons({'outputs_differ': [['a', 'b', 'c']]}, r, None, '')
    assert h.check_comparisons({'outputs_equal': [['a', 'c']]}, r, None, '')


# ---------------------------------------------------------------------------- compiled form


def test_compiled_form(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text(json.dumps({
        'root': {'dag': {'tasks': {
            'a': {'componentRef': {'name': 'comp-a'}, 'cachingOptions': {}},
            'sub': {'componentRef': {'name': 'comp-sub'}}}}},
        'components': {'comp-a': {'executorLabel': 'exec-a'},
                       'comp-sub': {'dag': {'tasks': {'b': {'componentRef': {'name': 'comp-a'},
                                                            'cachingOptions': {'enableCache': True}}}}}},
        'deploymentSpec': {'executors': {'exec-a': {'container': {'image': 'alpine:3.19'}}}}}))
    good = {'tasks': {'a': {'cachingOptions': {}, 'image': 'alpine:3.19'}, 'sub': {'cachingOptions': None},
                      'sub/b': {'cachingOptions': {'enableCache': True}}}}
    assert h.check_compiled_form(good, str(path), '') == []
    assert h.check_compiled_form({'tasks': {'a': {'cachingOptions': None}}}, str(path), '')
    assert h.check_compiled_form({'tasks': {'sub': {'cachingOptions': {}}}}, str(path), '')
    assert h.check_compiled_form({'tasks': {'sub/b': {'cachingOptions': {}}}}, str(path), '')
    assert h.check_compiled_form({'tasks': {'a': {'image': 'alpine:3.20'}}}, str(path), '')
    with pytest.raises(h.CaseError):
        h.check_compiled_form({'tasks': {'sub/zzz': {}}}, str(path), '')


# ---------------------------------------------------------------------------- dry-run predictions


def _dry(*pairs):
    return result(*({'name': n, 'state': 'SKIPPED', 'prediction': p, 'type': t} for n, p, t in pairs))


def test_predictions_that_hold():
    dry = _dry(('a', 'WOULD_RUN', 'container'), ('b', 'CACHED', 'container'), ('c', 'MAY_RUN', 'container'),
               ('loop', 'MAY_RUN', 'loop'))
    real = result({'name': 'a', 'state': 'SUCCEEDED'}, {'name': 'b', 'state': 'CACHED'},
                  {'name': 'c', 'state': 'CACHED'},                         # MAY_RUN allows either
                  {'name': 'loop.0/x', 'state': 'SUCCEEDED'}, {'name': 'loop.1/x', 'state': 'FAILED'})
    assert h.check_predictions(dry, real, '') == []


def test_an_executed_task_predicted_cached_is_reported():
    dry = _dry(('a', 'CACHED', 'container'))
    problems = texts(h.check_predictions(dry, result({'name': 'a', 'state': 'SUCCEEDED'}), ''))
    assert problems == ['task a executed (SUCCEEDED) but the dry run predicted CACHED for a',
                        'task a: predicted CACHED, the real run has SUCCEEDED']


def test_a_predicted_cached_task_must_be_served():
    dry = _dry(('a', 'CACHED', 'container'), ('b', 'CACHED', 'container'))
    real = result({'name': 'a', 'state': 'SKIPPED'})
    assert texts(h.check_predictions(dry, real, '')) == [
        'task a: predicted CACHED, the real run has SKIPPED', 'task b: predicted CACHED, the real run has no such task']


def test_every_reached_task_is_in_the_dry_run():
    dry = _dry(('a', 'WOULD_RUN', 'container'), ('cached-loop', 'CACHED', 'loop'))
    real = result({'name': 'a', 'state': 'SUCCEEDED'}, {'name': 'b', 'state': 'CACHED'},
                  {'name': 'never', 'state': 'SKIPPED'}, {'name': 'cached-loop.0/x', 'state': 'SUCCEEDED'},
                  {'name': 'cached-loop', 'state': 'CACHED', 'type': 'loop'})
    problems = texts(h.check_predictions(dry, real, ''))
    # a loop predicted CACHED does not cover iterations that then execute
    assert "task b (CACHED) is not in the dry run's task list" in problems
    assert "task cached-loop.0/x (SUCCEEDED) is not in the dry run's task list" in problems
    assert len(problems) == 2


def test_an_enclosing_loop_iteration_or_dag_covers_its_tasks():
    assert h._covering('l.1/sub/x', {'l': 'MAY_RUN'}) == ('l', 'MAY_RUN')
    assert h._covering('l.1/sub/x', {'l.1': 'WOULD_RUN'}) == ('l.1', 'WOULD_RUN')
    assert h._covering('l.1/sub/x', {'l.1/sub': 'MAY_RUN'}) == ('l.1/sub', 'MAY_RUN')
    assert h._covering('l.1/sub/x', {'l.1/sub/x': 'CACHED', 'l': 'MAY_RUN'}) == ('l.1/sub/x', 'CACHED')
    assert h._covering('l.1/sub/x', {'l': 'CACHED'}) is None
    assert h._covering('l2/x', {'l': 'MAY_RUN'}) is None


def test_leaf_tasks_without_prediction_and_unknown_predictions():
    dry = result({'name': 'a', 'state': 'SKIPPED', 'prediction': 'MAYBE'}, {'name': 'b', 'state': 'CACHED'})
    problems = texts(h.check_predictions(dry, result(), ''))
    assert problems == ["dry run: task a: unknown prediction 'MAYBE'", 'dry run: task b has no prediction']


def test_no_prediction_field_at_all_is_the_pending_feature():
    dry = result({'name': 'a', 'state': 'SKIPPED', 'error': 'would run'})
    problems = h.check_predictions(dry, result({'name': 'a', 'state': 'SUCCEEDED'}), 'rerun: ')
    assert [p.kind for p in problems] == ['predictions-unavailable']
    report = h.CaseReport('x', problems)
    assert report.only_predictions_unavailable
    report.problems.append(h.Problem('rerun: task a: expected CACHED, got SUCCEEDED'))
    assert not report.only_predictions_unavailable        # other failures are never excused


# ---------------------------------------------------------------------------- case files and end to end


def test_unknown_fields_are_refused(tmp_path):
    (tmp_path / 'expected.json').write_text(json.dumps({'state': 'SUCCEEDED', 'taks': []}))
    with pytest.raises(h.CaseError, match='taks'):
        h.load_case(str(tmp_path))
    (tmp_path / 'expected.json').write_text(json.dumps({'rerun': [{'extra_arg': []}]}))
    with pytest.raises(h.CaseError, match='extra_arg'):
        h.load_case(str(tmp_path))


def test_wrong_expectations_fail_end_to_end(tmp_path):
    """A real case (one random-token task, --no-cache on the first run) with expectations that
    contradict what must happen: each wrong one is reported, the true ones are not."""
    case = tmp_path / 'wrong'
    case.mkdir()
    shutil.copy(os.path.join(h.CASES_DIR, 'caching_no_cache_first', 'pipeline.yaml'), case / 'pipeline.yaml')
    (case / 'expected.json').write_text(json.dumps({
        'extra_args': ['--no-cache'],
        'tasks': [{'name': 'token', 'state': 'SUCCEEDED', 'outputs': {'parameters': {'Output': {'$regex': '^one-'}}}}],
        'rerun': {'tasks': [{'name': 'token', 'state': 'CACHED'}], 'same': ['token']}}))
    report = h.run_case(str(case))
    problems = texts(report.problems)
    assert len(problems) == 2, problems
    assert problems[0] == 'rerun: task token: expected CACHED, got SUCCEEDED'
    assert problems[1].startswith('rerun: task token: outputs {') and "different from the first run's" in problems[1]
    assert [r.rc for r in report.runs] == [0, 0]
    assert '--no-cache' in report.runs[0].argv and '--no-cache' not in report.runs[1].argv
