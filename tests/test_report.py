"""--report / `runs report`: the run as one self-contained HTML page."""
import html

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Markdown, Metrics, Output

from tests.helpers import compile_pipeline, run_cli, run_pipeline_file


@dsl.component
def visualize(metrics: Output[Metrics], cls: Output[ClassificationMetrics], page: Output[HTML],
              notes: Output[Markdown]) -> str:
    metrics.log_metric('accuracy', 0.93)
    cls.log_confusion_matrix(['cat', 'dog'], [[7, 1], [2, 9]])
    with open(page.path, 'w') as f:
        f.write('<h1>Hello "report"</h1>')
    with open(notes.path, 'w') as f:
        f.write('# Notes\n* one')
    return '<script>alert(1)</script>'


@dsl.component
def broken():
    raise ValueError('this one fails on purpose')


@dsl.pipeline(name='visuals')
def visuals():
    visualize()
    broken()


def test_report_shows_metrics_visualizations_and_failures(tmp_path):
    path = compile_pipeline(visuals, tmp_path / 'v.yaml')
    report = tmp_path / 'out' / 'report.html'
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--report', str(report))
    assert rc == 1, proc.stdout
    page = report.read_text()
    assert '<th>accuracy</th><td>0.93</td>' in page
    assert '<th>cat</th><td>7</td><td>1</td>' in page and '<th>dog</th><td>2</td><td>9</td>' in page
    assert 'srcdoc="' + html.escape('<h1>Hello "report"</h1>', quote=True) + '"' in page
    assert '# Notes' in page
    assert '<script>alert(1)</script>' not in page and '&lt;script&gt;' in page
    assert 'this one fails on purpose' in page           # the failing task's log tail
    # the same page can be made later from the run record
    again = run_cli('runs', 'report', result['run_id'], '--root', str(tmp_path / 'root'), '-o',
                    str(tmp_path / 'again.html'))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / 'again.html').read_text().count('confusion matrix') == 1
