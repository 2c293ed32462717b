"""The run page in a real browser (headless Chromium): it loads with no console error and
fetches nothing; the drawn graph, the metrics and the confusion matrix are what the run's
result says; a hostile HTML artifact's script runs but cannot reach the page around it.
Skipped without Chromium locally; a failure under CI=true (tests/browser/chromium.py)."""
import json
import os

import pytest

from tests.browser.chromium import chromium, require_browser, serve
from tests.helpers import compile_pipeline, run_pipeline_file, task
from tests.report_pipelines import HOSTILE_HTML, visuals

PARENT_ATTEMPTS = ('parent_document', 'top_document', 'parent_cookie', 'parent_storage', 'parent_global')


@pytest.fixture(scope='module')
def browser():
    require_browser()
    with chromium() as driver:
        yield driver


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """Two runs of the visuals pipeline (the second mostly cached), their pages served over HTTP."""
    tmp = tmp_path_factory.mktemp('browser')
    path = compile_pipeline(visuals, tmp / 'v.yaml')
    www = tmp / 'www'
    results = {}
    for name in ('first', 'second'):
        rc, results[name], proc = run_pipeline_file(path, tmp / 'root', '-p', f'hostile={HOSTILE_HTML}',
                                                    '--report', str(www / f'{name}.html'))
        assert rc == 1, proc.stdout + proc.stderr
    with serve(str(www)) as url:
        yield {'url': url, 'www': www, **results}


def wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def load(driver, url):
    driver.get(url)
    wait(driver, lambda d: d.execute_script('return document.readyState') == 'complete')
    driver.get_log('browser')          # what came before this page is not its concern


def frame_results(driver, css):
    """Switches into the artifact frame, waits for its script to finish, returns what it wrote."""
    from selenium.webdriver.common.by import By
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, css))
    try:
        wait(driver, lambda d: d.find_element(By.TAG_NAME, 'body').get_attribute('data-ran') == 'yes')
        return json.loads(driver.find_element(By.TAG_NAME, 'body').get_attribute('data-results'))
    finally:
        driver.switch_to.default_content()


@pytest.mark.parametrize('name', ['first', 'second'])
def test_page_loads_without_console_errors_and_fetches_nothing(browser, site, name):
    browser.get(f'{site["url"]}/{name}.html')
    wait(browser, lambda d: d.execute_script('return document.readyState') == 'complete')
    frame_results(browser, 'iframe.artifact-html')          # the artifact's script has run, too
    errors = [e for e in browser.get_log('browser') if e['level'] == 'SEVERE']
    assert errors == []
    # one document, no subresource: no script, stylesheet, font or image came from anywhere
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == []
    assert browser.title == f'visuals — {site[name]["state"]}'


@pytest.mark.parametrize('name', ['first', 'second'])
def test_graph_has_one_node_per_task_coloured_by_state(browser, site, name):
    from selenium.webdriver.common.by import By
    result = site[name]
    load(browser, f'{site["url"]}/{name}.html')
    leafs = {t['name']: t['state'] for t in result['tasks'] if t['type'] in ('container', 'importer')}
    nodes = browser.find_elements(By.CSS_SELECTOR, 'svg.dag g.node')
    assert sorted(n.get_attribute('data-task') for n in nodes) == sorted(leafs)
    fills = {}
    for node in nodes:
        state = leafs[node.get_attribute('data-task')]
        assert f'state-{state}' in node.get_attribute('class').split()
        rect = node.find_element(By.TAG_NAME, 'rect')
        assert rect.size['width'] > 0 and rect.size['height'] > 0        # drawn, not just present
        fills.setdefault(state, set()).add(rect.value_of_css_property('fill'))
    # the stylesheet colours each state, one colour per state
    assert all(len(f) == 1 for f in fills.values()) and len({f.pop() for f in fills.values()}) == len(fills)
    if name == 'second':
        assert leafs['visualize'] == 'CACHED'
        marks = browser.find_elements(By.CSS_SELECTOR, 'svg.dag g.node.cached g.cached-mark')
        assert len(marks) == list(leafs.values()).count('CACHED') and all(m.is_displayed() for m in marks)
    # a click on a node goes to its task's section
    target = browser.find_element(By.CSS_SELECTOR, 'svg.dag g.node[data-task="broken"]')
    browser.execute_script('arguments[0].parentNode.dispatchEvent(new MouseEvent("click", {bubbles: true}))', target)
    wait(browser, lambda d: d.execute_script('return decodeURIComponent(location.hash)') == '#task-broken')


def test_metrics_and_confusion_matrix_cells_match_the_result(browser, site):
    from selenium.webdriver.common.by import By
    result = site['first']
    load(browser, f'{site["url"]}/first.html')
    [metrics] = task(result, 'visualize')['outputs']['artifacts']['metrics']
    shown = {}
    for row in browser.find_elements(By.CSS_SELECTOR, 'table.metrics tr[data-metric]'):
        cells = row.find_elements(By.CSS_SELECTOR, 'td, th')
        shown[(cells[0].text, cells[1].text, cells[2].text)] = float(cells[3].text)
    assert shown == {('visualize', 'metrics', k): v for k, v in metrics['metadata'].items()}
    [cls] = task(result, 'visualize')['outputs']['artifacts']['cls']
    cm = cls['metadata']['confusionMatrix']
    matrix = [r['row'] for r in cm['rows']]
    table = browser.find_element(By.CSS_SELECTOR, 'table.cm')
    grid = [[int(td.text) for td in tr.find_elements(By.CSS_SELECTOR, 'td.cm-cell')]
            for tr in table.find_elements(By.TAG_NAME, 'tr')[1:]]
    assert grid == matrix
    header = [th.text for th in table.find_elements(By.CSS_SELECTOR, 'th[scope=col]')]
    assert header == [s['displayName'] for s in cm['annotationSpecs']]
    # a heatmap: within a row, the larger count is the darker cell
    cells = table.find_elements(By.CSS_SELECTOR, 'td.cm-cell')
    alpha = {(c.get_attribute('data-row'), c.get_attribute('data-col')):
             float(c.value_of_css_property('background-color').rstrip(')').split(',')[-1]) for c in cells}
    assert alpha[('0', '0')] > alpha[('0', '1')] > alpha[('0', '2')]
    curve = browser.find_element(By.CSS_SELECTOR, 'svg.roc polyline.curve')
    assert curve.size['width'] > 0 and len(curve.get_attribute('points').split()) == len(cls['metadata']['confidenceMetrics']) + 2


def test_hostile_artifact_script_runs_but_cannot_reach_the_page(browser, site):
    url = f'{site["url"]}/first.html'
    load(browser, url)
    # the page's origin has a cookie and a secret before the artifact runs again
    browser.execute_script("document.cookie = 'session=abc; path=/'; localStorage.setItem('secret', 's3cr3t');")
    title = browser.title
    load(browser, url)
    results = frame_results(browser, 'iframe.artifact-html')
    assert set(results) == set(PARENT_ATTEMPTS) | {'own_cookie', 'own_storage'}
    assert all(v.startswith('blocked') for v in results.values()), results
    assert browser.title == title
    # (the hostile text is also shown, as text, as the task's input parameter: look for markup)
    assert browser.execute_script("return [...document.querySelectorAll('h1')].map(h => h.textContent)") \
        == [f'visuals {site["first"]["state"]}']
    assert browser.execute_script("return document.querySelector('header h1').textContent").startswith('visuals')
    assert browser.execute_script('return document.cookie') == 'session=abc'
    assert browser.execute_script("return localStorage.getItem('pwned')") is None
    assert browser.execute_script('return window.pwned') is None
    assert browser.execute_script("return localStorage.getItem('secret')") == 's3cr3t'


def test_the_hostile_artifact_would_reach_a_page_that_trusted_it(browser, site):
    """The detector can fail: the same artifact in a same-origin frame reaches its parent."""
    import html
    trusting = site['www'] / 'trusting.html'
    trusting.write_text(f'<!doctype html><title>trusting</title><iframe class="artifact-html" '
                        f'sandbox="allow-scripts allow-same-origin" srcdoc="{html.escape(HOSTILE_HTML, quote=True)}">'
                        f'</iframe>')
    try:
        load(browser, f'{site["url"]}/trusting.html')
        wait(browser, lambda d: d.execute_script("return [...document.querySelectorAll('h1')].map(h => h.textContent)")
             == ['PWNED'])
        assert browser.title == 'PWNED' and browser.execute_script('return window.pwned') is True
    finally:
        os.remove(trusting)

