"""A run's tasks as a drawn DAG (SVG) for the run page.

The tree comes from the task names alone: 'condition-1/deploy-model' sits in the group
'condition-1'; 'for-loop-2.0/train' in iteration 0 of the loop 'for-loop-2' (the result
contract's naming, docs/architecture.md). Edges are the tasks' `upstream` lists when the
result records them; otherwise they are read from the run folder: an input artifact whose
URI is another task's output (for a cached task, in the run that produced the result).
Dependencies through parameters alone can't be seen that way, and the page says so.

Layout: each group is laid out on its own, left to right, in layers by longest path
(edges lifted to the group's children), ordered within a layer by their upstreams' mean
position (one sweep is enough for pipelines), and then drawn as a box inside its parent.
"""
from __future__ import annotations

import dataclasses
import html
import re
from typing import Optional

from localrunner.faces.history import GROUP_TYPES, History, RunRecord, format_seconds, input_artifacts, leaf_tasks

NODE_W, NODE_H = 190, 46
GAP_X, GAP_Y = 56, 16
PAD, HEAD = 12, 22
LOOP_COLUMNS = 4
MARGIN_TOP = 16            # room for an edge routed over the top row
_ITERATION = re.compile(r'^(?P<loop>.+)\.(?P<index>\d+)$')
_LABEL_CHARS = 26


@dataclasses.dataclass
class Node:
    path: str                          # '' for the pipeline itself
    kind: str                          # leaf | dag | loop | condition | iteration | root
    task: Optional[dict] = None        # its record in the result, when it has one
    children: list['Node'] = dataclasses.field(default_factory=list)
    x: float = 0
    y: float = 0
    w: float = NODE_W
    h: float = NODE_H

    @property
    def leaf(self) -> bool:
        return self.kind == 'leaf'

    @property
    def state(self) -> str:
        return (self.task or {}).get('state', '')

    @property
    def label(self) -> str:
        if self.kind == 'iteration':
            return '#' + self.path.rsplit('.', 1)[1]
        own = self.path.rsplit('/', 1)[-1]
        display = (self.task or {}).get('display_name') or own
        if self.kind == 'loop':
            return f'{own} ×{len(self.children)}'
        return display

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


def _parent_path(path: str) -> tuple[str, str]:
    """(parent path, kind the parent has when it has no record) of a node path."""
    head, _, last = path.rpartition('/')
    m = _ITERATION.match(last)
    if m:   # 'a/loop.3' sits in the loop 'a/loop'
        return (f'{head}/' if head else '') + m.group('loop'), 'loop'
    return head, 'dag'


def build_tree(result: dict) -> Node:
    root = Node('', 'root', w=0, h=0)
    nodes: dict[str, Node] = {'': root}

    def ensure(path: str, kind: str) -> Node:
        if path in nodes:
            return nodes[path]
        parent_path, parent_kind = _parent_path(path)
        parent = ensure(parent_path, parent_kind)
        m = _ITERATION.match(path.rsplit('/', 1)[-1])
        node = Node(path, 'iteration' if m and parent.kind == 'loop' else kind)
        nodes[path] = node
        parent.children.append(node)
        return node

    for task in result['tasks']:
        kind = task.get('type') or 'container'
        node = ensure(task['name'], kind if kind in GROUP_TYPES else 'leaf')
        node.task = task
        if node.kind != 'iteration':
            node.kind = kind if kind in GROUP_TYPES else 'leaf'
    for node in root.walk():      # a loop's iterations in index order
        if node.kind == 'loop':
            node.children.sort(key=_iteration_index)
    return root


def _iteration_index(node: Node) -> int:
    m = _ITERATION.match(node.path.rsplit('/', 1)[-1])
    return int(m.group('index')) if m else 0


def edges(history: History, record: RunRecord) -> tuple[list[tuple[str, str]], bool, list[str]]:
    """(producer, consumer) node paths; whether they were inferred from artifacts; and the
    leaf tasks whose inputs could not be read (a cached task whose producing run is not
    under this root: a fresh CI machine served from a remote cache)."""
    result = record.result
    names = {t['name'] for t in result['tasks']}
    if any('upstream' in t for t in result['tasks']):
        out = []
        for t in result['tasks']:
            prefix = t['name'].rpartition('/')[0]
            for up in t.get('upstream') or []:
                src = f'{prefix}/{up}' if prefix else up
                if src in names and src != t['name']:
                    out.append((src, t['name']))
        return sorted(set(out)), False, []
    producers: dict[str, dict[str, str]] = {}
    out, unseen = [], []
    for task in leaf_tasks(result):
        data, source, _ = history.inputs(record, task)
        if data is None:
            if task.get('type') != 'importer' and task['state'] in ('SUCCEEDED', 'FAILED', 'CACHED'):
                unseen.append(task['name'])
            continue
        if source.run_id not in producers:
            producers[source.run_id] = source.uri_producers() if source.result else {}
        for _, art in input_artifacts(data):
            src = producers[source.run_id].get(art.get('uri'))
            if src and src in names and src != task['name']:
                out.append((src, task['name']))
    return sorted(set(out)), True, unseen


# ---------------------------------------------------------------------------- layout

def _child_containing(group: Node, path: str) -> Optional[Node]:
    for child in group.children:
        if path == child.path or path.startswith(child.path + '/') or (
                child.kind == 'loop' and path.startswith(child.path + '.')):
            return child
    return None


def _layout(group: Node, links: list[tuple[str, str]]) -> None:
    """Sizes `group` and places its children relative to its top-left corner."""
    for child in group.children:
        if not child.leaf:
            _layout(child, links)
    kids = group.children
    if group.kind == 'loop':
        _grid(group)
        return
    preds: dict[int, set[int]] = {i: set() for i in range(len(kids))}
    index = {id(c): i for i, c in enumerate(kids)}
    for src, dst in links:
        a, b = _child_containing(group, src), _child_containing(group, dst)
        if a is not None and b is not None and a is not b:
            preds[index[id(b)]].add(index[id(a)])
    layer: dict[int, int] = {}

    def depth(i: int, seen: frozenset = frozenset()) -> int:
        if i not in layer:
            layer[i] = 1 + max((depth(p, seen | {i}) for p in preds[i] if p not in seen), default=-1)
        return layer[i]
    columns: list[list[int]] = []
    for i in range(len(kids)):
        d = depth(i)
        while len(columns) <= d:
            columns.append([])
        columns[d].append(i)
    position: dict[int, float] = {}
    for col in columns:           # order by the mean position of what they wait for
        col.sort(key=lambda i: (sum(position[p] for p in preds[i]) / len(preds[i]) if preds[i] else -1, i))
        for rank, i in enumerate(col):
            position[i] = rank
    top = HEAD if group.kind != 'root' else 0
    pad = PAD if group.kind != 'root' else 0
    heights = [sum(kids[i].h for i in col) + GAP_Y * (len(col) - 1) for col in columns]
    inner_h = max(heights, default=0)
    x = pad
    for col, height in zip(columns, heights):
        y = top + pad + (inner_h - height) / 2
        width = max(kids[i].w for i in col)
        for i in col:
            kids[i].x, kids[i].y = x + (width - kids[i].w) / 2, y
            y += kids[i].h + GAP_Y
        x += width + GAP_X
    group.w = max(x - GAP_X + pad, NODE_W if group.kind != 'root' else 0) if columns else NODE_W
    group.h = top + 2 * pad + inner_h if columns else top + pad


def _grid(loop: Node) -> None:
    """A loop's iterations side by side, LOOP_COLUMNS to a row: they run independently, and
    a long loop should not make the page a mile high."""
    kids = loop.children
    x = y = 0.0
    row_h, width = 0.0, 0.0
    for i, child in enumerate(kids):
        if i and i % LOOP_COLUMNS == 0:
            x, y = 0.0, y + row_h + GAP_Y
            row_h = 0.0
        child.x, child.y = PAD + x, HEAD + PAD + y
        x += child.w + GAP_Y
        row_h = max(row_h, child.h)
        width = max(width, x - GAP_Y)
    loop.w = max(width + 2 * PAD, NODE_W)
    loop.h = HEAD + 2 * PAD + y + row_h


def _absolute(node: Node, ox: float = 0, oy: float = 0) -> None:
    node.x += ox
    node.y += oy
    for c in node.children:
        _absolute(c, node.x, node.y)


# ---------------------------------------------------------------------------- drawing

def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _short(text: str, n: int = _LABEL_CHARS) -> str:
    return text if len(text) <= n else text[:n - 1] + '…'


def _node_svg(node: Node) -> str:
    t = node.task or {}
    state = node.state or 'UNKNOWN'
    cached = state == 'CACHED'
    classes = f'node state-{_e(state)}' + (' cached' if cached else '')
    sub = state.lower() + (f' · {format_seconds(t.get("duration_s"))}' if t.get('duration_s') is not None else '')
    if cached and (t.get('cached_from') or {}).get('run'):
        sub = 'cached'
    tip = f'{node.path}\n{state}' + (f'\ncached from {t["cached_from"].get("run")}' if cached and t.get('cached_from') else '')
    mark = (f'<g class="cached-mark"><circle cx="{node.x + node.w - 12:.1f}" cy="{node.y + 12:.1f}" r="7"/>'
            f'<text x="{node.x + node.w - 12:.1f}" y="{node.y + 15.5:.1f}">C</text></g>') if cached else ''
    return (f'<a href="#task-{_e(node.path)}"><g class="{classes}" data-task="{_e(node.path)}">'
            f'<title>{_e(tip)}</title>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.1f}" height="{node.h:.1f}" rx="6"/>'
            f'<text class="label" x="{node.x + 10:.1f}" y="{node.y + 19:.1f}">{_e(_short(node.label))}</text>'
            f'<text class="sub" x="{node.x + 10:.1f}" y="{node.y + 36:.1f}">{_e(sub)}</text>{mark}</g></a>')


def _group_svg(node: Node) -> str:
    state = node.state
    classes = f'group kind-{node.kind}' + (f' state-{_e(state)}' if state else '')
    label = node.label + (f' · {state.lower()}' if state and node.kind != 'iteration' else '')
    inner = ''.join(_group_svg(c) if not c.leaf else _node_svg(c) for c in node.children)
    return (f'<g class="{classes}" data-group="{_e(node.path)}"><title>{_e(node.path)}</title>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.1f}" height="{node.h:.1f}" rx="8"/>'
            f'<text class="group-label" x="{node.x + 8:.1f}" y="{node.y + 15:.1f}">{_e(_short(label, 40))}</text>'
            f'{inner}</g>')


def _blockers(a: Node, b: Node, x1: float, x2: float, y1: float, y2: float, leaves: list[Node]) -> list[Node]:
    """Leaf nodes (not a or b, nor inside them) a straight-ish edge from (x1,y1) to (x2,y2)
    would cross."""
    lo, hi = min(y1, y2), max(y1, y2)
    out = []
    for n in leaves:
        if n is a or n is b or n.path.startswith(a.path + '/') or n.path.startswith(b.path + '/'):
            continue
        if n.x < x2 and n.x + n.w > x1 and n.y < hi + 2 and n.y + n.h > lo - 2:
            out.append(n)
    return out


def _edge_svg(a: Node, b: Node, leaves: list[Node]) -> str:
    attrs = f'class="edge" data-from="{_e(a.path)}" data-to="{_e(b.path)}"'
    x1, y1 = a.x + a.w, a.y + (a.h if not a.leaf else NODE_H) / 2
    x2, y2 = b.x, b.y + (b.h if not b.leaf else NODE_H) / 2
    if x2 <= x1:       # across groups the consumer may sit left of the producer's box edge
        x1, y1 = a.x + a.w / 2, a.y + a.h
        x2, y2 = b.x + b.w / 2, b.y
        return f'<path {attrs} d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + 30:.1f} {x2:.1f},{y2 - 30:.1f} {x2:.1f},{y2:.1f}"/>'
    blockers = _blockers(a, b, x1, x2, y1, y2, leaves)
    if blockers:       # an edge that skips a column goes over what stands in between
        xa = min(n.x for n in blockers) - 8
        xb = max(n.x + n.w for n in blockers) + 8
        yr = min(n.y for n in blockers) - 9
        return (f'<path {attrs} d="M{x1:.1f},{y1:.1f} C{(x1 + xa) / 2:.1f},{y1:.1f} {(x1 + xa) / 2:.1f},{yr:.1f} '
                f'{xa:.1f},{yr:.1f} L{xb:.1f},{yr:.1f} C{(xb + x2) / 2:.1f},{yr:.1f} {(xb + x2) / 2:.1f},{y2:.1f} '
                f'{x2:.1f},{y2:.1f}"/>')
    mid = (x1 + x2) / 2
    return f'<path {attrs} d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"/>'


def render_svg(result: dict, links: list[tuple[str, str]]) -> str:
    root = build_tree(result)
    if not root.children:
        return '<p class="dim">no tasks ran</p>'
    _layout(root, links)
    _absolute(root, 4, MARGIN_TOP)
    nodes = {n.path: n for n in root.walk()}
    leaves = [n for n in nodes.values() if n.leaf]
    edges_svg = ''.join(_edge_svg(nodes[a], nodes[b], leaves) for a, b in links if a in nodes and b in nodes)
    body = ''.join(_group_svg(c) if not c.leaf else _node_svg(c) for c in root.children)
    width, height = root.w + 8, root.h + MARGIN_TOP + 4
    return (f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="pipeline graph" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
            f'<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
            f'<g class="edges">{edges_svg}</g>{body}</svg>')
