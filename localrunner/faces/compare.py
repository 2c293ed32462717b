"""`localrunner runs compare RUN_A RUN_B` (or `--last`): what changed between two runs —
parameters that differ, which tasks ran and which were served from the cache, metrics side by
side with deltas, and output artifacts whose content changed (by content digest). On the
console, and as a page with `--html FILE`."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from localrunner.errors import UsageError
from localrunner.faces.history import (History, RunRecord, artifacts_of, format_seconds, format_value, is_number,
                                       leaf_tasks, metric_rows)

_MISSING = object()


@dataclasses.dataclass
class Comparison:
    a: RunRecord
    b: RunRecord
    parameters: list[tuple[str, Any, Any]]                 # name, value in A, value in B (_MISSING)
    tasks: list[tuple[str, Optional[dict], Optional[dict]]]
    metrics: list[tuple[str, str, str, Any, Any]]          # task, artifact, metric, A, B
    artifacts: list[tuple[str, str, Optional[str], Optional[str]]]   # task, output, digest A, digest B


def _params_differ(history: History, a: RunRecord, b: RunRecord) -> list[tuple[str, Any, Any]]:
    pa, pb = history.input_parameters(a), history.input_parameters(b)
    out = []
    for name in list(pa) + [n for n in pb if n not in pa]:
        va, vb = pa.get(name, _MISSING), pb.get(name, _MISSING)
        if va != vb or type(va) is not type(vb):
            out.append((name, va, vb))
    return out


def _union(names_a: list[str], names_b: list[str]) -> list[str]:
    return list(dict.fromkeys(names_a + names_b))


def compare(history: History, a: RunRecord, b: RunRecord) -> Comparison:
    ta = {t['name']: t for t in leaf_tasks(a.result)}
    tb = {t['name']: t for t in leaf_tasks(b.result)}
    tasks = [(n, ta.get(n), tb.get(n)) for n in _union(list(ta), list(tb))]
    ma = {(t, art, m): v for t, art, m, v in metric_rows(a.result)}
    mb = {(t, art, m): v for t, art, m, v in metric_rows(b.result)}
    metrics = [(*k, ma.get(k, _MISSING), mb.get(k, _MISSING)) for k in _union(list(ma), list(mb))]
    da = {(t['name'], n): art.get('digest') for t in ta.values() for n, art in artifacts_of(t)}
    db = {(t['name'], n): art.get('digest') for t in tb.values() for n, art in artifacts_of(t)}
    changed = []
    for key in _union(list(da), list(db)):
        x, y = da.get(key), db.get(key)
        # a Metrics artifact has no file (digest None): its numbers are compared above
        if (x or y) and x != y:
            changed.append((*key, x, y))
    return Comparison(a, b, _params_differ(history, a, b), tasks, metrics, changed)


def _ran(task: Optional[dict]) -> str:
    if task is None:
        return 'absent'
    return {'SUCCEEDED': 'ran', 'FAILED': 'ran, failed', 'CACHED': 'cached'}.get(task['state'], task['state'].lower())


def delta(va: Any, vb: Any) -> Optional[float]:
    if is_number(va) and is_number(vb):
        return vb - va
    return None


def _v(value: Any) -> str:
    return '-' if value is _MISSING else format_value(value)


def _digest(d: Optional[str]) -> str:
    return d[:12] if d else '(none)'


def text(c: Comparison) -> str:
    lines = []
    for tag, r in (('A', c.a), ('B', c.b)):
        lines.append(f'{tag}  {r.run_id}  {r.result["state"]}  {format_seconds(r.result.get("duration_s"))}')
    lines += ['', 'parameters that differ']
    if c.parameters:
        width = max(len(n) for n, _, _ in c.parameters)
        lines += [f'  {n:<{width}}  {_v(x)} -> {_v(y)}' for n, x, y in c.parameters]
    else:
        lines.append('  (none)')
    width = max([len(n) for n, _, _ in c.tasks] + [4])
    lines += ['', 'tasks (ran here, or served from the cache)', f'  {"TASK":<{width}}  {"A":<12}  {"B":<12}  TIME A -> B']
    for name, x, y in c.tasks:
        lines.append(f'  {name:<{width}}  {_ran(x):<12}  {_ran(y):<12}  '
                     f'{format_seconds((x or {}).get("duration_s"))} -> {format_seconds((y or {}).get("duration_s"))}')
    ran = [n for n, _, y in c.tasks if y and y['state'] in ('SUCCEEDED', 'FAILED')]
    cached = [n for n, _, y in c.tasks if y and y['state'] == 'CACHED']
    lines.append(f'  B ran {len(ran)}' + (f' ({", ".join(ran)})' if ran else '') + f', {len(cached)} cached')
    lines += ['', 'metrics']
    if c.metrics:
        labels = [f'{t} {art}.{m}' for t, art, m, _, _ in c.metrics]
        width = max(len(s) for s in labels)
        for label, (_, _, _, x, y) in zip(labels, c.metrics):
            d = delta(x, y)
            lines.append(f'  {label:<{width}}  {_v(x):>10}  {_v(y):>10}'
                         + (f'  {d:+.4g}' if d is not None and d != 0 else '  =' if d == 0 else ''))
    else:
        lines.append('  (none)')
    lines += ['', 'artifacts whose content changed']
    if c.artifacts:
        lines += [f'  {t} {n}: {_digest(x)} -> {_digest(y)}' for t, n, x, y in c.artifacts]
    else:
        lines.append('  (none)')
    return '\n'.join(lines)


def html_page(c: Comparison) -> str:
    from localrunner.faces.report import _e, page, state_badge

    def head(tag: str, r: RunRecord) -> str:
        return (f'<tr><th>{tag}</th><td>{_e(r.run_id)}</td><td>{state_badge(r.result["state"])}</td>'
                f'<td class="num">{_e(format_seconds(r.result.get("duration_s")))}</td></tr>')
    params = ''.join(f'<tr data-param="{_e(n)}"><th>{_e(n)}</th><td>{_e(_v(x))}</td><td>{_e(_v(y))}</td></tr>'
                     for n, x, y in c.parameters) or '<tr><td colspan="3" class="dim">none</td></tr>'
    tasks = ''.join(f'<tr data-task="{_e(n)}"><td>{_e(n)}</td><td>{_e(_ran(x))}</td><td>{_e(_ran(y))}</td>'
                    f'<td class="num">{_e(format_seconds((x or {}).get("duration_s")))}</td>'
                    f'<td class="num">{_e(format_seconds((y or {}).get("duration_s")))}</td></tr>'
                    for n, x, y in c.tasks)
    metrics = []
    for t, art, m, x, y in c.metrics:
        d = delta(x, y)
        metrics.append(f'<tr data-task="{_e(t)}" data-metric="{_e(m)}"><td>{_e(t)}</td><td>{_e(art)}</td><th>{_e(m)}</th>'
                       f'<td class="num">{_e(_v(x))}</td><td class="num">{_e(_v(y))}</td>'
                       f'<td class="num delta">{"" if d is None else f"{d:+.4g}"}</td></tr>')
    arts = ''.join(f'<tr><td>{_e(t)}</td><td>{_e(n)}</td><td><code>{_e(_digest(x))}</code></td>'
                   f'<td><code>{_e(_digest(y))}</code></td></tr>' for t, n, x, y in c.artifacts) \
        or '<tr><td colspan="4" class="dim">none</td></tr>'
    body = f'''<h1>Comparing two runs of {_e(c.b.result.get("pipeline") or "")}</h1>
<table>{head("A", c.a)}{head("B", c.b)}</table>
<h2>Parameters that differ</h2><table class="params"><tr><th>parameter</th><th>A</th><th>B</th></tr>{params}</table>
<h2>Tasks</h2><table class="tasks"><tr><th>task</th><th>A</th><th>B</th><th>time A</th><th>time B</th></tr>{tasks}</table>
<h2>Metrics</h2><table class="metrics"><tr><th>task</th><th>artifact</th><th>metric</th><th>A</th><th>B</th><th>B − A</th></tr>
{"".join(metrics) or '<tr><td colspan="6" class="dim">none</td></tr>'}</table>
<h2>Artifacts whose content changed</h2><table class="artifacts"><tr><th>task</th><th>output</th><th>digest A</th>
<th>digest B</th></tr>{arts}</table>'''
    return page(f'compare {c.a.run_id} {c.b.run_id}', body)


def last_two(history: History) -> tuple[str, str]:
    """The newest run that has an earlier run of the same pipeline, and that earlier run."""
    readable = [r for r in (history.read(n) for n in history.run_ids()) if r.result is not None]
    for i in range(len(readable) - 1, 0, -1):
        newest = readable[i]
        for older in reversed(readable[:i]):
            if older.result.get('pipeline') == newest.result.get('pipeline'):
                return older.run_id, newest.run_id
    raise UsageError(f'runs compare --last: no two finished runs of the same pipeline under {history.runs_dir}')


def compare_command(history: History, args) -> int:
    if args.last:
        if args.run_id:
            raise UsageError('runs compare: give two run ids or --last, not both')
        a_id, b_id = last_two(history)
    else:
        if not args.run_id or not args.run_id_b:
            raise UsageError('runs compare: give two run ids (RUN_A RUN_B), or --last')
        a_id, b_id = args.run_id, args.run_id_b
    a = history.readable(a_id, 'runs compare')
    b = history.readable(b_id, 'runs compare')
    c = compare(history, a, b)
    print(text(c))
    if args.html:
        from localrunner.faces.report import write_html
        print(f'page: {write_html(html_page(c), args.html)}')
    return 0
