"""A run as one self-contained HTML page: what the KFP UI would show for it — task states and
times, metrics, classification metrics (confusion matrix, ROC points), HTML and Markdown
artifacts, output parameters, and the log tail of what failed. Built from result.json."""
from __future__ import annotations

import datetime
import html
import json
import os
from typing import Any

_STATE_COLOR = {'SUCCEEDED': '#1a7f37', 'CACHED': '#0969da', 'FAILED': '#cf222e', 'SKIPPED': '#6e7781',
                'CANCELED': '#9a6700'}
_MAX_EMBED = 2_000_000        # bytes of an HTML/Markdown artifact shown inline
_LOG_TAIL = 30


def _e(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, default=str))


def _read(path: str, limit: int = _MAX_EMBED) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read(limit)
    except OSError:
        return ''


def _state(state: str) -> str:
    return f'<span class="state" style="background:{_STATE_COLOR.get(state, "#6e7781")}">{_e(state)}</span>'


def _confusion_matrix(md: dict) -> str:
    cm = md.get('confusionMatrix') or {}
    labels = [s.get('displayName', '') for s in cm.get('annotationSpecs', [])]
    rows = [r.get('row', []) for r in cm.get('rows', [])]
    if not rows:
        return ''
    head = ''.join(f'<th>{_e(label)}</th>' for label in labels)
    body = ''.join('<tr><th>' + _e(labels[i] if i < len(labels) else i) + '</th>'
                   + ''.join(f'<td>{_e(v)}</td>' for v in row) + '</tr>' for i, row in enumerate(rows))
    return (f'<table class="cm"><caption>confusion matrix (rows: actual, columns: predicted)</caption>'
            f'<tr><th></th>{head}</tr>{body}</table>')


def _roc(md: dict) -> str:
    points = md.get('confidenceMetrics') or []
    if not points:
        return ''
    rows = ''.join(f'<tr><td>{_e(p.get("confidenceThreshold"))}</td><td>{_e(p.get("recall"))}</td>'
                   f'<td>{_e(p.get("falsePositiveRate"))}</td></tr>' for p in points[:50])
    more = f'<p class="dim">{len(points) - 50} more points in the artifact metadata</p>' if len(points) > 50 else ''
    return (f'<table><caption>ROC points</caption><tr><th>threshold</th><th>recall (TPR)</th><th>FPR</th></tr>'
            f'{rows}</table>{more}')


def _artifact_block(name: str, art: dict) -> str:
    kind = art.get('type', '')
    md = art.get('metadata') or {}
    out = [f'<div class="artifact"><h4>{_e(name)} <span class="dim">{_e(kind)}</span></h4>']
    if kind == 'system.Metrics' and md:
        out.append('<table>' + ''.join(f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in md.items())
                   + '</table>')
    elif kind == 'system.ClassificationMetrics':
        out.append(_confusion_matrix(md) + _roc(md))
    elif kind == 'system.HTML' and art.get('path') and os.path.isfile(art['path']):
        out.append(f'<iframe sandbox="" srcdoc="{html.escape(_read(art["path"]), quote=True)}"></iframe>')
    elif kind == 'system.Markdown' and art.get('path') and os.path.isfile(art['path']):
        out.append(f'<pre class="md">{_e(_read(art["path"]))}</pre>')
    elif md:
        out.append(f'<pre>{_e(json.dumps(md, indent=1, default=str))}</pre>')
    if art.get('path'):
        out.append(f'<p class="dim">{_e(art["path"])} · {_e(art.get("digest") or "no content")}</p>')
    out.append('</div>')
    return ''.join(out)


def render(result: dict) -> str:
    tasks = [t for t in result.get('tasks', []) if t.get('type') in ('container', 'importer', None)]
    started = datetime.datetime.fromtimestamp(result.get('started') or 0).strftime('%Y-%m-%d %H:%M:%S')
    rows = []
    for t in tasks:
        cached = (t.get('cached_from') or {}).get('run', '')
        rows.append(f'<tr><td><a href="#t-{_e(t["name"])}">{_e(t["name"])}</a></td><td>{_state(t["state"])}</td>'
                    f'<td>{_e(t.get("duration_s") or "")}</td><td>{_e(t.get("attempts", ""))}</td>'
                    f'<td>{_e(cached)}</td></tr>')
    sections = []
    for t in tasks:
        outs = t.get('outputs') or {}
        parts = [f'<section id="t-{_e(t["name"])}"><h3>{_e(t["name"])} {_state(t["state"])}</h3>']
        if t.get('display_name') and t['display_name'] != t['name'].rsplit('/', 1)[-1]:
            parts.append(f'<p class="dim">{_e(t["display_name"])}</p>')
        if t.get('error'):
            parts.append(f'<p class="error">{_e(t["error"])}</p>')
            if t.get('logs'):
                tail = _read(t['logs'][-1]).splitlines()[-_LOG_TAIL:]
                parts.append(f'<pre class="log">{_e(chr(10).join(tail))}</pre>')
        if outs.get('parameters'):
            parts.append('<table>' + ''.join(f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>'
                                             for k, v in outs['parameters'].items()) + '</table>')
        for name, arts in (outs.get('artifacts') or {}).items():
            for art in arts:
                parts.append(_artifact_block(name, art))
        parts.append('</section>')
        sections.append(''.join(parts))
    pipeline_outputs = (result.get('outputs') or {}).get('parameters') or {}
    outputs = ('<h2>Pipeline outputs</h2><table>' + ''.join(
        f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in pipeline_outputs.items()) + '</table>'
               if pipeline_outputs else '')
    warnings = ''.join(f'<li>{_e(w)}</li>' for w in result.get('warnings') or [])
    return f'''<!doctype html>
<html><head><meta charset="utf-8"><title>{_e(result.get("pipeline", "run"))} — {_e(result.get("state", ""))}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1f2328; }}
table {{ border-collapse: collapse; margin: .5em 0; }} th, td {{ border: 1px solid #d0d7de; padding: 3px 8px;
text-align: left; }} caption {{ text-align: left; color: #57606a; }}
.state {{ color: #fff; border-radius: 4px; padding: 1px 6px; font-size: 12px; }}
.dim {{ color: #57606a; font-size: 12px; }} .error {{ color: #cf222e; }}
pre {{ background: #f6f8fa; padding: .6em; overflow: auto; }} iframe {{ width: 100%; height: 420px;
border: 1px solid #d0d7de; }} section {{ border-top: 1px solid #d0d7de; margin-top: 1.2em; }}
.cm td {{ text-align: right; min-width: 3em; }}
</style></head><body>
<h1>{_e(result.get("pipeline", ""))} {_state(result.get("state", ""))}</h1>
<p class="dim">run {_e(result.get("run_id", ""))} · started {started} · {_e(result.get("duration_s", ""))} s ·
{_e(result.get("run_dir", ""))}</p>
{f"<ul class='dim'>{warnings}</ul>" if warnings else ""}
{outputs}
<h2>Tasks</h2>
<table><tr><th>task</th><th>state</th><th>seconds</th><th>attempts</th><th>cached from</th></tr>{"".join(rows)}</table>
{"".join(sections)}
</body></html>
'''


def write_report(result: dict, path: str) -> str:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(render(result))
    os.replace(tmp, path)
    return path
