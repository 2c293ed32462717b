"""`run --junit-xml FILE`: one test case per task, read back with an XML parser."""
import xml.etree.ElementTree as ET

from tests.helpers import compile_pipeline, run_pipeline_file, states
from tests.report_pipelines import visuals


def _cases(path):
    tree = ET.parse(path)           # must be well-formed XML whatever the logs held
    root = tree.getroot()
    assert root.tag == 'testsuites'
    [suite] = root.findall('testsuite')
    return root, suite, {c.get('name'): c for c in suite.findall('testcase')}


def test_junit_xml_has_a_case_per_task_with_failures_skips_and_cache_hits(tmp_path):
    path = compile_pipeline(visuals, tmp_path / 'v.yaml')
    xml_path = tmp_path / 'ci' / 'junit.xml'
    rc, first, proc = run_pipeline_file(path, tmp_path / 'root', '-p', 'hostile=<p>x</p>',
                                        '--junit-xml', str(xml_path))
    assert rc == 1, proc.stdout + proc.stderr
    assert f'junit: {xml_path}' in proc.stdout
    root, suite, cases = _cases(xml_path)
    leafs = states(first)
    assert set(cases) == set(leafs) | {'condition-4'}
    assert suite.get('name') == 'visuals' and {c.get('classname') for c in cases.values()} == {'visuals'}
    assert (suite.get('tests'), suite.get('failures'), suite.get('skipped'), suite.get('errors')) == \
        (str(len(leafs) + 1), '1', '1', '0')
    assert root.get('failures') == '1'
    [failure] = cases['broken'].findall('failure')
    assert failure.get('message') == 'exited with code 1: ValueError: this one fails on purpose'
    assert 'broken line 2 red' in failure.text           # the log tail, ANSI colours stripped
    assert '\x1b' not in failure.text and '\x07' not in failure.text
    [skipped] = cases['condition-4'].findall('skipped')
    assert skipped.get('message') == 'skipped: its condition was false'
    passed = cases['visualize']
    assert not list(passed.iter('failure')) and not list(passed.iter('skipped'))
    assert float(passed.get('time')) >= 0
    props = {p.get('name'): p.get('value') for p in passed.iter('property')}
    assert props['state'] == 'SUCCEEDED'
    run_props = {p.get('name'): p.get('value') for p in suite.find('properties')}
    assert run_props['run_id'] == first['run_id'] and run_props['state'] == 'FAILED'

    # again: served from the cache, marked so, and still a pass
    rc, second, proc = run_pipeline_file(path, tmp_path / 'root', '-p', 'hostile=<p>x</p>',
                                         '--junit-xml', str(xml_path))
    _, _, cases = _cases(xml_path)
    cached = cases['visualize']
    props = {p.get('name'): p.get('value') for p in cached.iter('property')}
    assert props['state'] == 'CACHED' and props['cached_from'] == f'{first["run_id"]}/visualize'
    assert not list(cached.iter('failure')) and not list(cached.iter('skipped'))
    assert f'served from run {first["run_id"]}' in cached.find('system-out').text
    assert cases['condition-3/consume-2'].find('properties/property').get('value') == 'SUCCEEDED'   # caching off


def test_junit_xml_is_not_written_by_a_dry_run(tmp_path):
    path = compile_pipeline(visuals, tmp_path / 'v.yaml')
    xml_path = tmp_path / 'junit.xml'
    rc, _, proc = run_pipeline_file(path, tmp_path / 'root', '-p', 'hostile=x', '--dry-run',
                                    '--junit-xml', str(xml_path))
    assert rc == 0, proc.stdout + proc.stderr
    assert not xml_path.exists()
