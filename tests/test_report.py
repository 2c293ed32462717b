"""The run page (`run --report`, `runs report`): one self-contained file drawn from a real
run's result.json and run folder. What a browser does with it: tests/browser/."""
import json
import os
import re
import shutil

import pytest

from localrunner.spec import load_pipeline, task_upstreams
from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, task
from tests.report_pipelines import HOSTILE_HTML, Page, visuals


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two runs of the visuals pipeline under one root: the second is served from the cache."""
    tmp = tmp_path_factory.mktemp('report')
    path = compile_pipeline(visuals, tmp / 'visuals.yaml')
    root = tmp / 'root'
    first_page = tmp / 'out' / 'first.html'
    rc, first, proc = run_pipeline_file(path, root, '-p', f'hostile={HOSTILE_HTML}', '--report', str(first_page))
    assert rc == 1, proc.stdout + proc.stderr          # `broken` fails on purpose
    rc, second, proc = run_pipeline_file(path, root, '-p', f'hostile={HOSTILE_HTML}')
    assert rc == 1, proc.stdout + proc.stderr
    return {'yaml': path, 'root': root, 'first': first, 'second': second, 'first_page': first_page, 'tmp': tmp}


def leaf(result):
    return [t for t in result['tasks'] if t['type'] in ('container', 'importer')]


def test_graph_has_one_node_per_task_with_its_state_and_the_groups(runs):
    result, page = runs['first'], Page(runs['first_page'].read_text())
    nodes = page.find('g', class_='node')
    assert sorted(n['data-task'] for n in nodes) == sorted(t['name'] for t in leaf(result))
    for n in nodes:
        assert f'state-{task(result, n["data-task"])["state"]}' in n['class'].split()
    assert task(result, 'broken')['state'] == 'FAILED'
    groups = {g['data-group']: g['class'].split() for g in page.find('g', class_='group')}
    assert 'kind-loop' in groups['for-loop-2'] and 'state-SUCCEEDED' in groups['for-loop-2']
    assert 'kind-iteration' in groups['for-loop-2.0'] and 'kind-iteration' in groups['for-loop-2.1']
    assert 'state-SKIPPED' in groups['condition-4']        # the branch whose condition was false
    assert 'kind-dag' in groups['condition-3']
    # the engine records each task's upstreams: parameter-only dependencies are drawn too
    edges = {(e['data-from'], e['data-to']) for e in page.find('path', class_='edge')}
    assert edges == {('visualize', 'for-loop-2'), ('visualize', 'condition-3'), ('visualize', 'condition-4')}
    assert 'parameters alone' not in page.text


def test_metrics_confusion_matrix_and_roc_match_the_result(runs):
    result, page = runs['first'], Page(runs['first_page'].read_text())
    [metrics] = task(result, 'visualize')['outputs']['artifacts']['metrics']
    rows = {(r['data-task'], r['data-metric']): r['data-value'] for r in page.find('tr') if 'data-metric' in r
            and 'data-value' in r}
    assert rows == {('visualize', k): str(v) for k, v in metrics['metadata'].items()}
    [cls] = task(result, 'visualize')['outputs']['artifacts']['cls']
    matrix = [r['row'] for r in cls['metadata']['confusionMatrix']['rows']]
    tables = page.find('table', class_='cm')
    assert len(tables) == 1 and tables[0]['data-task'] == 'visualize'
    cells = {(int(c['data-row']), int(c['data-col'])): c['data-value'] for c in page.find('td', class_='cm-cell')}
    assert cells == {(i, j): str(v) for i, row in enumerate(matrix) for j, v in enumerate(row)}
    labels = [s['displayName'] for s in cls['metadata']['confusionMatrix']['annotationSpecs']]
    assert all(f'<th scope="col">{label}</th>' in page.text for label in labels)
    [curve] = page.find('polyline', class_='curve')
    assert curve['data-points'] == str(len(cls['metadata']['confidenceMetrics']))
    # trapezoids through (0,0), the points by FPR, and (1,1)
    pts = [(0, 0)] + sorted((p['falsePositiveRate'], p['recall']) for p in cls['metadata']['confidenceMetrics']) + [(1, 1)]
    auc = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
    assert f'<span class="auc">{auc:.4f}</span>' in page.text


def test_artifacts_are_sandboxed_and_the_page_is_self_contained(runs):
    text = runs['first_page'].read_text()
    page = Page(text)
    frames = page.find('iframe')
    assert len(frames) == 2
    assert all('sandbox' in f and 'allow-same-origin' not in f['sandbox'] for f in frames)
    [html_frame] = page.find('iframe', class_='artifact-html')
    assert html_frame['sandbox'] == 'allow-scripts' and html_frame['srcdoc'] == HOSTILE_HTML
    [md_frame] = page.find('iframe', class_='artifact-markdown')
    assert md_frame['sandbox'] == ''                  # Markdown runs no script at all
    assert '<h1>Notes</h1>' in md_frame['srcdoc'] and '<td>a</td>' in md_frame['srcdoc']
    assert '<script' not in md_frame['srcdoc'] and '&lt;script&gt;' in md_frame['srcdoc']   # raw HTML is text
    # nothing of the artifact (nor the parameter carrying it) is markup of the page itself
    assert not page.find('script') and '<script' not in text.lower()
    # self-contained: no link, no fetched resource, no font, no remote anything
    assert not page.find('img') and [a['rel'] for a in page.find('link')] == ['icon']
    for _, attrs in page.elements:
        for name in ('src', 'href'):
            assert attrs.get(name, '#').startswith(('#', 'data:')), attrs
    css = ''.join(re.findall(r'<style>(.*?)</style>', text, re.S))
    assert '@import' not in css and '@font-face' not in css
    assert set(re.findall(r'url\(([^)]*)\)', css)) == {'#arrow'}


def test_task_sections_show_inputs_outputs_durations_and_log_tails(runs):
    result, page = runs['first'], Page(runs['first_page'].read_text())
    sections = {s['data-task']: s for s in page.find('section', class_='task')}
    assert set(sections) == {t['name'] for t in leaf(result)}
    text = page.text
    broken = text[text.index('id="task-broken"'):]
    broken = broken[:broken.index('</section>')]
    assert 'exited with code 1' in broken
    assert 'broken line 2' in broken and 'ValueError: this one fails on purpose' in broken
    assert '<details class="logs" open>' in broken                 # a failure's log is open
    consume = text[text.index('id="task-for-loop-2.1/consume"'):]
    consume = consume[:consume.index('</section>')]
    assert '<th>scale</th><td>2</td>' in consume                    # input parameter (the loop item)
    assert 'from visualize' in consume                              # input artifact and who made it
    assert '<th>Output</th><td>4</td>' in consume                   # output parameter
    assert 'consume 2:' in consume                                  # its log tail


def test_second_run_marks_cached_tasks_and_reads_their_inputs_from_the_producing_run(runs):
    second, first = runs['second'], runs['first']
    assert task(second, 'visualize')['state'] == 'CACHED'
    out = runs['tmp'] / 'second.html'
    proc = run_cli('runs', 'report', second['run_id'][:-2], '--root', str(runs['root']), '-o', str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    page = Page(out.read_text())
    [node] = page.find('g', data_task='visualize')
    assert {'state-CACHED', 'cached'} <= set(node['class'].split())
    assert page.find('g', class_='cached-mark')
    visualize = page.text[page.text.index('id="task-visualize"'):]
    assert f'served from the cache: inputs as run {first["run_id"]} recorded them' in visualize
    # a cached run records its upstreams too: the same graph as the run that produced them
    edges = {(e['data-from'], e['data-to']) for e in page.find('path', class_='edge')}
    assert ('visualize', 'for-loop-2') in edges
    # default place: the run folder
    proc = run_cli('runs', 'report', second['run_id'], '--root', str(runs['root']))
    assert proc.returncode == 0 and os.path.isfile(os.path.join(second['run_dir'], 'report.html'))


def test_without_recorded_upstreams_edges_come_from_artifacts(runs, tmp_path):
    """A result without `upstream` lists (an older localrunner's): the graph infers edges from
    the artifacts handed between tasks, and says what it could not see."""
    root = tmp_path / 'root'
    shutil.copytree(runs['root'], root, symlinks=True)
    run_dir = root / 'runs' / runs['first']['run_id']
    data = json.loads((run_dir / 'result.json').read_text())
    for t in data['tasks']:
        t.pop('upstream', None)
    (run_dir / 'result.json').write_text(json.dumps(data))
    out = tmp_path / 'p.html'
    proc = run_cli('runs', 'report', data['run_id'], '--root', str(root), '-o', str(out))
    assert proc.returncode == 0, proc.stderr
    page = Page(out.read_text())
    edges = {(e['data-from'], e['data-to']) for e in page.find('path', class_='edge')}
    assert {('visualize', 'for-loop-2.0/consume'), ('visualize', 'for-loop-2.1/consume'),
            ('visualize', 'condition-3/consume-2')} <= edges
    assert 'parameters alone' in page.text          # says what it could not see
    # the root moved: paths in the result are rebased onto where the run folder is now
    assert 'broken line 2' in page.text and str(run_dir) in page.text


def test_planted_links_do_not_leak_files_outside_the_run(runs, tmp_path):
    root = tmp_path / 'root'
    shutil.copytree(runs['root'], root, symlinks=True)
    secret = tmp_path / 'id_rsa'
    secret.write_text('-----BEGIN TOP SECRET-----')
    run_dir = root / 'runs' / runs['first']['run_id']
    data = json.loads((run_dir / 'result.json').read_text())
    [page_art] = task(data, 'visualize')['outputs']['artifacts']['page']
    page_file = page_art['path'].replace(data['run_dir'], str(run_dir))
    os.remove(page_file)
    os.symlink(secret, page_file)                          # what a hostile task could leave behind
    log = task(data, 'broken')['logs'][0].replace(data['run_dir'], str(run_dir))
    os.remove(log)
    os.symlink(secret, log)
    out = tmp_path / 'p.html'
    proc = run_cli('runs', 'report', data['run_id'], '--root', str(root), '-o', str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert 'TOP SECRET' not in text
    assert 'not embedded: its file is not inside the run folder' in text
    assert 'the log is missing' in text


def test_report_to_an_unwritable_place_is_one_line(runs, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    proc = run_cli('runs', 'report', runs['first']['run_id'], '--root', str(runs['root']),
                   '-o', str(blocker / 'r.html'))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and 'Traceback' not in proc.stderr


def test_a_run_served_from_elsewhere_still_draws_its_graph(runs, tmp_path):
    """A fresh CI machine served from a remote cache has no producing run under its root: the
    arrows come from the run's own recorded upstreams; the inputs can't be shown."""
    second = runs['second']
    root = tmp_path / 'root'
    shutil.copytree(os.path.join(runs['root'], 'runs', second['run_id']), root / 'runs' / second['run_id'],
                    symlinks=True)
    out = tmp_path / 'p.html'
    proc = run_cli('runs', 'report', second['run_id'], '--root', str(root), '-o', str(out))
    assert proc.returncode == 0, proc.stderr
    page = Page(out.read_text())
    edges = {(e['data-from'], e['data-to']) for e in page.find('path', class_='edge')}
    assert ('visualize', 'for-loop-2') in edges
    assert 'no arrows into' not in page.text
    assert 'inputs: not recorded in the run folder' in page.text
