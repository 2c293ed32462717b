"""The run page: one self-contained HTML file per run (`run --report FILE.html`, `runs report
RUN`) showing what the KFP UI would — the DAG (SVG, a CSS class per state), each task's
inputs, outputs, duration and log tail, metrics tables, confusion-matrix heatmaps and ROC
curves (KFP's ClassificationMetrics metadata), HTML and Markdown artifacts.

Built from the result document and the run folder only. No network: inline CSS, no script
of its own, system fonts. Artifact pages go into iframes through `srcdoc` with a `sandbox`
that never includes allow-same-origin: an HTML artifact's scripts run (KFP's HTML viewer
allows scripts too: frontend/src/components/viewers/HTMLViewer.tsx) but in an opaque origin,
so they can't reach this page, its cookies or its storage. Markdown gets no scripts at all.
"""
from __future__ import annotations

import datetime
import html
import json
import os
from typing import Any, Optional

from localrunner.errors import UsageError
from localrunner.faces import run_graph
from localrunner.faces.history import (BadResult, History, RunRecord, artifacts_of, check_result, format_seconds,
                                       format_value, input_artifacts, input_parameters, is_number, leaf_tasks,
                                       log_tail, metric_rows, task_counts)

MAX_EMBED = 2_000_000        # bytes of an HTML/Markdown artifact shown inline
LOG_TAIL = 40
ROC_TABLE_ROWS = 200
VISUAL_TYPES = ('system.ClassificationMetrics', 'system.HTML', 'system.Markdown')
STATE_COLORS = {'SUCCEEDED': '#1a7f37', 'CACHED': '#0969da', 'FAILED': '#cf222e', 'SKIPPED': '#8c959f',
                'CANCELED': '#9a6700', 'RUNNING': '#8250df'}

CSS = '''
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
  padding: 0 1em; color: #1f2328; background: #fff; }
h1 { font-size: 1.5em; margin: .2em 0; } h2 { margin-top: 1.6em; border-bottom: 1px solid #d0d7de; }
h3 { margin: .3em 0; } h4 { margin: .8em 0 .2em; }
table { border-collapse: collapse; margin: .4em 0; } th, td { border: 1px solid #d0d7de; padding: 3px 8px;
  text-align: left; vertical-align: top; } caption { text-align: left; color: #57606a; padding: 2px 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { color: #fff; border-radius: 4px; padding: 1px 6px; font-size: 12px; white-space: nowrap; }
.dim { color: #57606a; font-size: 12px; } .error { color: #cf222e; white-space: pre-wrap; }
.better { color: #1a7f37; } .worse { color: #cf222e; }
pre { background: #f6f8fa; padding: .6em; overflow: auto; max-height: 32em; font-size: 12px; }
iframe { width: 100%; height: 320px; border: 1px solid #d0d7de; resize: vertical; background: #fff; }
section.task { border-top: 1px solid #d0d7de; margin-top: 1.2em; padding-top: .3em; }
.cards { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.graph { overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px; background: #fafbfc; }
.legend span { margin-right: .8em; }
svg.dag text { font: 12px system-ui, sans-serif; } svg.dag .label { font-weight: 600; fill: #fff; }
svg.dag .sub { fill: #fff; opacity: .9; font-size: 11px; }
svg.dag .node rect { stroke: rgba(0,0,0,.25); stroke-width: 1; }
svg.dag .group > rect { fill: rgba(208,215,222,.18); stroke: #8c959f; stroke-width: 1; }
svg.dag .group.kind-loop > rect { stroke-dasharray: 6 3; }
svg.dag .group.kind-iteration > rect { fill: rgba(255,255,255,.6); stroke: #d0d7de; }
svg.dag .group.state-FAILED > rect { stroke: #cf222e; } svg.dag .group.state-SKIPPED > rect { stroke-dasharray: 2 3; }
svg.dag .group-label { fill: #57606a; font-size: 11px; }
svg.dag .edge { fill: none; stroke: #57606a; stroke-width: 1.3; marker-end: url(#arrow); opacity: .75; }
svg.dag marker path { fill: #57606a; }
svg.dag .cached-mark circle { fill: #fff; } svg.dag .cached-mark text { fill: #0969da; font-size: 10px;
  font-weight: 700; text-anchor: middle; }
svg.dag a:hover rect { stroke: #1f2328; stroke-width: 2; }
''' + ''.join(f'svg.dag .node.state-{s} rect {{ fill: {c}; }}\n.state-{s}.state {{ background: {c}; }}\n'
              for s, c in STATE_COLORS.items()) + '''
svg.dag .node.state-SKIPPED text, svg.dag .node.state-CANCELED text { fill: #fff; }
table.cm td.cm-cell { text-align: right; min-width: 3.2em; font-variant-numeric: tabular-nums; }
svg.roc .axis { stroke: #57606a; } svg.roc .grid { stroke: #eaeef2; } svg.roc .diag { stroke: #8c959f;
  stroke-dasharray: 4 3; } svg.roc .curve { fill: none; stroke: #0969da; stroke-width: 2; }
svg.roc circle { fill: #0969da; } svg.roc text { font: 11px system-ui, sans-serif; fill: #57606a; }
'''


def _e(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else format_value(value), quote=True)


def state_badge(state: str) -> str:
    return f'<span class="state state-{_e(state)}">{_e(state)}</span>'


def page(title: str, body: str, state: str = '') -> str:
    """The page shell every localrunner HTML file shares (run page, comparison). Its icon is
    inline too (a dot in the run's state colour): a browser asks a server for /favicon.ico
    otherwise."""
    color = STATE_COLORS.get(state, '#57606a').replace('#', '%23')
    icon = (f"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
            f"%3Ccircle cx='8' cy='8' r='7' fill='{color}'/%3E%3C/svg%3E")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="localrunner"><title>{_e(title)}</title>'
            f'<link rel="icon" href="{icon}">'
            f'<style>{CSS}</style></head><body>\n{body}\n</body></html>\n')


def _kv_table(items: dict, cls: str = '') -> str:
    rows = ''.join(f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in items.items())
    return f'<table class="{cls}">{rows}</table>' if rows else ''


# ---------------------------------------------------------------------------- visualizations

def confusion_matrix(md: dict, task: str = '', artifact: str = '') -> str:
    """A heatmap table: each cell shaded by its share of its row (rows: actual class)."""
    cm = md.get('confusionMatrix')
    if not isinstance(cm, dict) or not isinstance(cm.get('rows'), list) or not cm['rows']:
        return ''
    specs = cm.get('annotationSpecs') if isinstance(cm.get('annotationSpecs'), list) else []
    labels = [str(s.get('displayName', i)) if isinstance(s, dict) else str(i) for i, s in enumerate(specs)]
    rows = [r.get('row') if isinstance(r, dict) and isinstance(r.get('row'), list) else [] for r in cm['rows']]
    width = max(len(labels), *(len(r) for r in rows))
    labels += [str(i) for i in range(len(labels), width)]
    head = ''.join(f'<th scope="col">{_e(label)}</th>' for label in labels)
    body = []
    for i, row in enumerate(rows):
        total = sum(v for v in row if is_number(v)) or 1
        cells = []
        for j in range(width):
            v = row[j] if j < len(row) else None
            share = v / total if is_number(v) else 0
            ink = '#fff' if share > 0.55 else '#1f2328'
            cells.append(f'<td class="cm-cell" data-row="{i}" data-col="{j}" data-value="{_e(v)}" '
                         f'style="background: rgba(9,105,218,{0.08 + 0.85 * share:.3f}); color: {ink}">'
                         f'{_e(v if v is not None else "")}</td>')
        body.append(f'<tr><th scope="row">{_e(labels[i] if i < len(labels) else i)}</th>{"".join(cells)}</tr>')
    return (f'<table class="cm" data-task="{_e(task)}" data-artifact="{_e(artifact)}">'
            f'<caption>confusion matrix (rows: actual, columns: predicted)</caption>'
            f'<tr><th></th>{head}</tr>{"".join(body)}</table>')


def _roc_points(md: dict) -> list[tuple[float, float, Any]]:
    points = md.get('confidenceMetrics')
    out = []
    for p in points if isinstance(points, list) else []:
        if isinstance(p, dict) and is_number(p.get('falsePositiveRate')) and is_number(p.get('recall')):
            out.append((float(p['falsePositiveRate']), float(p['recall']), p.get('confidenceThreshold')))
    return out


def roc_curve(md: dict) -> str:
    """KFP's confidenceMetrics ({confidenceThreshold, recall, falsePositiveRate}, see kfp
    dsl/types/artifact_types.py ClassificationMetrics.log_roc_data_point) as an SVG curve,
    with the area under it (trapezoids through (0,0) and (1,1)) and the points as a table."""
    points = _roc_points(md)
    if not points:
        return ''
    ordered = sorted(points, key=lambda p: (p[0], p[1]))
    path = [(0.0, 0.0)] + [(f, r) for f, r, _ in ordered] + [(1.0, 1.0)]
    auc = sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(path, path[1:]))
    size, m = 240, 34

    def xy(f: float, r: float) -> str:
        return f'{m + max(0.0, min(1.0, f)) * size:.1f},{m + (1 - max(0.0, min(1.0, r))) * size:.1f}'
    grid = ''.join(f'<line class="grid" x1="{m + t * size}" y1="{m}" x2="{m + t * size}" y2="{m + size}"/>'
                   f'<line class="grid" x1="{m}" y1="{m + t * size}" x2="{m + size}" y2="{m + t * size}"/>'
                   f'<text x="{m + t * size - 6}" y="{m + size + 14}">{t:g}</text>'
                   f'<text x="{m - 22}" y="{m + (1 - t) * size + 4}">{t:g}</text>' for t in (0, .25, .5, .75, 1))
    dots = ''.join(f'<circle cx="{xy(f, r).split(",")[0]}" cy="{xy(f, r).split(",")[1]}" r="2.5">'
                   f'<title>threshold {_e(t)}: TPR {r:.3g}, FPR {f:.3g}</title></circle>' for f, r, t in ordered[:500])
    svg = (f'<svg class="roc" xmlns="http://www.w3.org/2000/svg" width="{size + m + 12}" height="{size + m + 30}" '
           f'role="img" aria-label="ROC curve">{grid}'
           f'<line class="axis" x1="{m}" y1="{m + size}" x2="{m + size}" y2="{m + size}"/>'
           f'<line class="axis" x1="{m}" y1="{m}" x2="{m}" y2="{m + size}"/>'
           f'<line class="diag" x1="{m}" y1="{m + size}" x2="{m + size}" y2="{m}"/>'
           f'<polyline class="curve" data-points="{len(points)}" points="{" ".join(xy(f, r) for f, r in path)}"/>{dots}'
           f'<text x="{m + size / 2 - 50}" y="{m + size + 28}">false positive rate</text>'
           f'<text x="{m}" y="{m - 10}">true positive rate (recall)</text></svg>')
    rows = ''.join(f'<tr><td class="num">{_e(t)}</td><td class="num">{r:.4g}</td><td class="num">{f:.4g}</td></tr>'
                   for f, r, t in points[:ROC_TABLE_ROWS])
    more = f'<p class="dim">{len(points) - ROC_TABLE_ROWS} more points in the metadata</p>' \
        if len(points) > ROC_TABLE_ROWS else ''
    return (f'<div class="roc-block"><h4>ROC curve <span class="dim">AUC ≈ <span class="auc">{auc:.4f}</span>'
            f'</span></h4>{svg}<details><summary>{len(points)} points</summary><table><tr><th>threshold</th>'
            f'<th>recall (TPR)</th><th>FPR</th></tr>{rows}</table>{more}</details></div>')


def _embedded(record: Optional[RunRecord], art: dict) -> tuple[Optional[str], str]:
    """(text of an artifact file to show inline, or None; why not)."""
    path = record.local(art.get('path')) if record else None
    if not path:
        return None, 'not embedded: its file is not inside the run folder'
    try:
        size = os.path.getsize(path)
        if size > MAX_EMBED:
            return None, f'not embedded: {size / 1e6:.1f} MB (limit {MAX_EMBED / 1e6:.0f} MB)'
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read(), ''
    except IsADirectoryError:
        return None, 'not embedded: a folder'
    except OSError as e:
        return None, f'not embedded: {e.strerror}'


def _markdown_html(text: str) -> str:
    from markdown_it import MarkdownIt       # imported here: only a run with Markdown pays for it
    # raw HTML in Markdown is shown as text: the frame runs no script anyway (sandbox="" below),
    # and a blocked script would only put an error on the console
    body = MarkdownIt('commonmark', {'html': False}).enable('table').render(text)
    return ('<!doctype html><meta charset="utf-8"><style>body{font:14px/1.5 system-ui,sans-serif;margin:.8em;'
            'color:#1f2328} table{border-collapse:collapse} th,td{border:1px solid #d0d7de;padding:2px 6px}'
            f'pre{{background:#f6f8fa;padding:.5em}}</style>{body}')


def artifact_block(record: Optional[RunRecord], task: str, name: str, art: dict) -> str:
    kind = art.get('type') or ''
    md = art.get('metadata') or {}
    out = [f'<div class="artifact" data-task="{_e(task)}" data-artifact="{_e(name)}">'
           f'<h4>{_e(name)} <span class="dim">{_e(kind)}</span></h4>']
    if kind == 'system.Metrics':
        rows = ''.join(f'<tr data-metric="{_e(k)}"><th>{_e(k)}</th><td class="num">{_e(v)}</td></tr>'
                       for k, v in md.items())
        out.append(f'<table class="metrics-table">{rows}</table>' if rows else '<p class="dim">no metrics</p>')
    elif kind == 'system.ClassificationMetrics':
        shown = confusion_matrix(md, task, name) + roc_curve(md)
        out.append(f'<div class="cards">{shown}</div>' if shown else '<p class="dim">no confusion matrix or ROC points</p>')
        rest = {k: v for k, v in md.items() if k not in ('confusionMatrix', 'confidenceMetrics')}
        out.append(_kv_table(rest))
    elif kind in ('system.HTML', 'system.Markdown'):
        text, why = _embedded(record, art)
        if text is None:
            out.append(f'<p class="dim">{_e(why)}</p>')
        elif kind == 'system.HTML':
            out.append(f'<iframe class="artifact-html" title="{_e(name)}" sandbox="allow-scripts" '
                       f'referrerpolicy="no-referrer" srcdoc="{html.escape(text, quote=True)}"></iframe>')
        else:
            out.append(f'<iframe class="artifact-markdown" title="{_e(name)}" sandbox="" '
                       f'srcdoc="{html.escape(_markdown_html(text), quote=True)}"></iframe>')
    elif md:
        out.append(f'<pre>{_e(json.dumps(md, indent=1, default=str))}</pre>')
    where = art.get('path') or art.get('uri')
    if where:
        out.append(f'<p class="dim">{_e(where)} · {_e(art.get("digest") or "no file content")}</p>')
    out.append('</div>')
    return ''.join(out)


# ---------------------------------------------------------------------------- sections

def _inputs_html(history: History, record: RunRecord, task: dict) -> str:
    data, source, source_task = history.inputs(record, task)
    if data is None:
        return '<p class="dim">inputs: not recorded in the run folder</p>'
    params = input_parameters(data)
    producers = source.uri_producers() if source and source.result else {}
    rows = []
    for name, art in input_artifacts(data):
        uri = art.get('uri', '')
        kind = art['type'].get('schemaTitle', '') if isinstance(art.get('type'), dict) else ''
        by = producers.get(uri)
        rows.append(f'<tr><th>{_e(name)}</th><td>{_e(kind)}</td>'
                    f'<td>{_e(uri)}{f" <span class=dim>from {_e(by)}</span>" if by else ""}</td></tr>')
    note = ''
    if source is not record:
        note = (f'<p class="dim">served from the cache: inputs as run {_e(source.run_id)} recorded them '
                f'for {_e(source_task)}</p>')
    if not params and not rows:
        return note + '<p class="dim">no inputs</p>'
    return (note + ('<h4>input parameters</h4>' + _kv_table(params, 'inputs') if params else '')
            + (f'<h4>input artifacts</h4><table class="inputs">{"".join(rows)}</table>' if rows else ''))


def _logs_html(record: RunRecord, task: dict) -> str:
    logs = task.get('logs') or []
    if not logs:
        return ''
    paths = [record.local(p) for p in logs]
    listing = ''.join(f'<li>attempt {i + 1}: {_e(p or logs[i])}{"" if p else " (outside the run folder)"}</li>'
                      for i, p in enumerate(paths))
    tail = log_tail(paths[-1], LOG_TAIL)
    shown = (f'<pre class="log">{_e(chr(10).join(tail))}</pre>' if tail
             else '<p class="dim">the log is empty</p>' if tail is not None else '<p class="dim">the log is missing</p>')
    opened = ' open' if task['state'] == 'FAILED' else ''
    return (f'<details class="logs"{opened}><summary>log (last {LOG_TAIL} lines of attempt {len(logs)})</summary>'
            f'<ul class="dim">{listing}</ul>{shown}</details>')


def _task_section(history: History, record: RunRecord, task: dict) -> str:
    name = task['name']
    facts = [state_badge(task['state']), f'{format_seconds(task.get("duration_s"))}',
             f'{task.get("attempts", 0)} attempt(s)']
    cached = task.get('cached_from') or {}
    if cached.get('run'):
        facts.append(f'cached from {_e(cached.get("run"))} / {_e(cached.get("task", ""))}')
    display = task.get('display_name')
    parts = [f'<section class="task" id="task-{_e(name)}" data-task="{_e(name)}" data-state="{_e(task["state"])}">'
             f'<h3>{_e(name)}</h3><p>{" · ".join(facts)}'
             + (f' <span class="dim">{_e(display)}</span>' if display and display != name.rsplit('/', 1)[-1] else '')
             + '</p>']
    if task.get('error'):
        parts.append(f'<p class="error">{_e(task["error"])}</p>')
    parts.append(_inputs_html(history, record, task))
    outs = task.get('outputs') or {}
    if outs.get('parameters'):
        parts.append('<h4>output parameters</h4>' + _kv_table(outs['parameters'], 'outputs'))
    for art_name, art in artifacts_of(task):
        if art.get('type') in VISUAL_TYPES:     # drawn once, under Visualizations
            parts.append(f'<p><a href="#vis-{_e(name)}-{_e(art_name)}">{_e(art_name)}</a> '
                         f'<span class="dim">{_e(art["type"])}: see Visualizations</span></p>')
        else:
            parts.append(artifact_block(record, name, art_name, art))
    parts.append(_logs_html(record, task))
    parts.append('</section>')
    return ''.join(parts)


def _metrics_summary(result: dict) -> str:
    rows = metric_rows(result)
    if not rows:
        return ''
    body = ''.join(f'<tr data-task="{_e(t)}" data-artifact="{_e(a)}" data-metric="{_e(m)}" data-value="{_e(v)}">'
                   f'<td><a href="#task-{_e(t)}">{_e(t)}</a></td><td>{_e(a)}</td><th>{_e(m)}</th>'
                   f'<td class="num">{_e(v)}</td></tr>' for t, a, m, v in rows)
    return (f'<h2>Metrics</h2><table class="metrics"><tr><th>task</th><th>artifact</th><th>metric</th>'
            f'<th>value</th></tr>{body}</table>')


def _visualizations(record: RunRecord, result: dict) -> str:
    blocks = []
    for task in leaf_tasks(result):
        for name, art in artifacts_of(task):
            if art.get('type') in VISUAL_TYPES:
                blocks.append(f'<h3 id="vis-{_e(task["name"])}-{_e(name)}"><a href="#task-{_e(task["name"])}">'
                              f'{_e(task["name"])}</a></h3>' + artifact_block(record, task['name'], name, art))
    return '<h2>Visualizations</h2>' + ''.join(blocks) if blocks else ''


def render(result: dict, history: Optional[History] = None, record: Optional[RunRecord] = None) -> str:
    """The page for a checked result document, reading the run folder through `record`."""
    if record is None:
        record = record_for(result)
    if history is None:
        history = History(os.path.dirname(os.path.dirname(record.dir)))
    tasks = leaf_tasks(result)
    counts = task_counts(result)
    started = datetime.datetime.fromtimestamp(result.get('started') or 0).strftime('%Y-%m-%d %H:%M:%S')
    links, inferred, unseen = run_graph.edges(history, record)
    legend = ''.join(f'<span>{state_badge(s)}</span>' for s in STATE_COLORS if s != 'RUNNING')
    edge_note = (' · arrows: artifacts passed between tasks (this run does not record dependencies through '
                 'parameters alone)') if inferred else ''
    if unseen:
        edge_note += (f' · no arrows into {", ".join(unseen[:5])}{" ..." if len(unseen) > 5 else ""}: '
                      'served from a run that is not under this root')
    summary = ', '.join(f'{n} {s.lower()}' for s, n in counts.items() if s != 'ran' and n)
    rows = ''.join(
        f'<tr data-task="{_e(t["name"])}"><td><a href="#task-{_e(t["name"])}">{_e(t["name"])}</a></td>'
        f'<td>{state_badge(t["state"])}</td><td class="num">{_e(format_seconds(t.get("duration_s")))}</td>'
        f'<td class="num">{_e(t.get("attempts", 0))}</td><td>{_e((t.get("cached_from") or {}).get("run", ""))}</td></tr>'
        for t in tasks)
    pipeline_outputs = (result.get('outputs') or {}).get('parameters') or {}
    warnings = ''.join(f'<li>{_e(w)}</li>' for w in result.get('warnings') or [])
    params = result.get('parameters') or {}
    body = f'''<header><h1>{_e(result.get("pipeline") or "run")} {state_badge(result["state"])}</h1>
<p class="dim">run {_e(result.get("run_id") or record.run_id)} · started {started} ·
{_e(format_seconds(result.get("duration_s")))} · {len(tasks)} tasks: {_e(summary)} · {_e(record.dir)}</p></header>
{f"<ul class='dim warnings'>{warnings}</ul>" if warnings else ""}
{"<h2>Parameters</h2>" + _kv_table(params, "parameters") if params else ""}
<h2>Graph</h2><p class="dim legend">{legend}<span>C = served from the cache</span>{_e(edge_note)}</p>
<div class="graph">{run_graph.render_svg(result, links)}</div>
{_metrics_summary(result)}
{_visualizations(record, result)}
{"<h2>Pipeline outputs</h2>" + _kv_table(pipeline_outputs) if pipeline_outputs else ""}
<h2>Tasks</h2>
<table class="tasks"><tr><th>task</th><th>state</th><th>time</th><th>attempts</th><th>cached from</th></tr>{rows}</table>
{"".join(_task_section(history, record, t) for t in tasks)}'''
    return page(f'{result.get("pipeline") or "run"} — {result["state"]}', body, result['state'])


def record_for(result: dict) -> RunRecord:
    """The RunRecord of a result that was just made (its run folder is where it says)."""
    try:
        check_result(result)
    except BadResult as e:
        raise UsageError(f'report: the result document is not usable: {e}') from None
    run_dir = result.get('run_dir') or '.'
    return RunRecord(result.get('run_id') or os.path.basename(run_dir), run_dir, result, None, False)


def write_html(text: str, path: str) -> str:
    """Writes a page atomically (a reader never sees half a page); returns its absolute path."""
    path = os.path.abspath(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f'{path}: {e.strerror}') from None
    return path


def write_report(result: dict, path: str, history: Optional[History] = None,
                 record: Optional[RunRecord] = None) -> str:
    return write_html(render(result, history, record), path)
