"""Pipelines whose runs the run page, history, comparison and JUnit tests look at."""
from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Input, Markdown, Metrics, Output

# A hostile HTML artifact: its script tries to reach the page that shows it, and writes down
# what happened to each attempt in its own document (the tests read it from inside the frame).
HOSTILE_HTML = '''<!doctype html><html><body><h1 id="h">artifact page</h1><script>
var results = {};
function attempt(name, fn) { try { fn(); results[name] = 'reached'; } catch (e) { results[name] = 'blocked: ' + e.name; } }
attempt('top_document', function () { window.top.document.title = 'PWNED'; });
attempt('parent_cookie', function () { parent.document.cookie = 'pwned=1'; });
attempt('own_cookie', function () { document.cookie = 'pwned=1'; if (document.cookie.indexOf('pwned') < 0) throw {name: 'NoCookie'}; });
attempt('parent_storage', function () { window.stolen = parent.localStorage.getItem('secret'); });
attempt('own_storage', function () { localStorage.setItem('pwned', '1'); });
attempt('parent_global', function () { parent.pwned = true; if (parent.pwned !== true) throw {name: 'NotSet'}; });
attempt('parent_document', function () { parent.document.body.innerHTML = '<h1>PWNED</h1>'; });
document.body.setAttribute('data-ran', 'yes');
document.body.setAttribute('data-results', JSON.stringify(results));
</script></body></html>'''


@dsl.component
def visualize(metrics: Output[Metrics], cls: Output[ClassificationMetrics], page: Output[HTML],
              notes: Output[Markdown], hostile: str, accuracy: float = 0.93) -> str:
    metrics.log_metric('accuracy', accuracy)
    metrics.log_metric('loss', 0.25)
    cls.log_confusion_matrix(['cat', 'dog', 'bird'], [[7, 1, 0], [2, 9, 1], [0, 3, 11]])
    cls.log_roc_curve([0.0, 0.1, 0.35, 1.0], [0.0, 0.7, 0.92, 1.0], [1.0, 0.8, 0.5, 0.0])
    with open(page.path, 'w') as f:
        f.write(hostile)
    with open(notes.path, 'w') as f:
        f.write('# Notes\n\n| k | v |\n|---|---|\n| a | 1 |\n\n<script>document.title = "md ran"</script>\n')
    print('visualized')
    return 'done'


@dsl.component
def consume(page: Input[HTML], scale: int) -> int:
    print(f'consume {scale}: {len(open(page.path).read())} chars')
    return scale * 2


@dsl.component
def broken(lines: int = 3):
    for i in range(lines):
        print(f'broken line {i} \x1b[31mred\x1b[0m \x07bell')
    raise ValueError('this one fails on purpose')


@dsl.pipeline(name='visuals')
def visuals(hostile: str, accuracy: float = 0.93):
    v = visualize(hostile=hostile, accuracy=accuracy)
    with dsl.ParallelFor([1, 2]) as i:
        consume(page=v.outputs['page'], scale=i)
    with dsl.If(v.outputs['Output'] == 'done'):
        consume(page=v.outputs['page'], scale=10).set_caching_options(False)
    with dsl.If(v.outputs['Output'] == 'never'):
        consume(page=v.outputs['page'], scale=20)
    broken()


class Page:
    """The elements of an HTML page as (tag, attributes) — enough to check a page's structure
    without a browser (srcdoc documents stay attribute values, as in a browser)."""

    def __init__(self, text: str):
        from html.parser import HTMLParser
        self.text = text
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        page = self

        class _Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                page.elements.append((tag, {k: (v if v is not None else '') for k, v in attrs}))

            def handle_data(self, data):
                page.texts.append(data)
        _Parser(convert_charrefs=True).feed(text)

    def find(self, tag: str, **attrs) -> list[dict]:
        """Elements of `tag` whose attributes contain each given value (class: one of its classes)."""
        out = []
        for t, a in self.elements:
            if t != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = 'class' if k == 'class_' else k.replace('_', '-')
                if k == 'class':
                    ok = ok and v in a.get('class', '').split()
                else:
                    ok = ok and a.get(k) == v
            if ok:
                out.append(a)
        return out
