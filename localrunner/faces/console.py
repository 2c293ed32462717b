"""What a person sees while a run goes on, and its summary. A subscriber of the engine's
events (engine/events.py); the engine itself never prints.

On a terminal (and not under CI=true): a live view redrawn at a fixed rate — one line per
running task with its elapsed time, an "environment" line per environment being built with
the installer's latest output, a progress bar per ParallelFor (done / cached / failed of N),
and every finished task and failure printed above it the moment it happens (a failure with
the last lines of its log). Elsewhere: plain lines, no control codes; the tasks of a loop are
summed up in a progress line every tenth of the loop instead of a line each.
The summary separates the time spent building environments from the tasks' own time.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import Optional, TextIO

from localrunner.engine import events as ev
from localrunner.engine.events import Event, handler_table

_STYLE = {'SUCCEEDED': 'green', 'CACHED': 'cyan', 'FAILED': 'bold red', 'SKIPPED': 'dim', 'CANCELED': 'yellow'}
_METRIC_TYPES = ('system.Metrics',)
_ITERATION = re.compile(r'^(.*)\.(\d+|\*)$')
_SHOWN_RUNNING = 8
_FOLD_OVER = 10          # a loop's task in more iterations than this: one summary row


class _Loop:
    def __init__(self, total: int):
        self.total = total
        self.done = self.cached = self.failed = self.skipped = 0
        self.said = 0                                   # plain mode: tenths already reported

    @property
    def ended(self) -> int:
        return self.done + self.cached + self.failed + self.skipped


def plain_wanted(stream: TextIO) -> bool:
    """No live view: not a terminal, or CI (its log would fill with redraws)."""
    if os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes'):
        return True
    return not (hasattr(stream, 'isatty') and stream.isatty())


class ConsoleView:
    def __init__(self, stream: Optional[TextIO] = None, quiet: bool = False, live: Optional[bool] = None,
                 explain: bool = False, verbose: bool = False, root: Optional[str] = None):
        stream = stream if stream is not None else sys.stdout       # at call time: pytest swaps it
        self.explain = explain
        self.verbose = verbose
        self.quiet = quiet
        self.root = root                     # as the user gave it: the summary names it back
        self.live_mode = (not plain_wanted(stream)) if live is None else live
        self._stream = stream
        self._console = None
        self.would_run = self.would_hit = 0
        self.running: dict[str, float] = {}              # task -> started
        self.building: dict[str, tuple[float, str]] = {}  # task -> (started, latest installer line)
        self.env_spans: list[tuple[float, float]] = []   # (start, end) of environment builds
        self.env_s_of: dict[str, float] = {}             # task -> seconds its environment took
        self.loops: dict[str, _Loop] = {}
        self.finished = 0
        self.total = 0
        self.started = time.time()
        self._lock = threading.RLock()       # Live.start() renders at once, inside a handler
        self._live = None
        self._handlers = handler_table(self)
        # what EventBus.wants asks: a task's lines are shown with --verbose only
        self.event_types = frozenset(t for t in self._handlers if verbose or t is not ev.TaskLog)

    @property
    def console(self):
        """rich's Console, made (and rich imported, ~25 ms) at the first thing printed: a quiet
        run prints nothing through it and never imports rich."""
        if self._console is None:
            from rich.console import Console
            # plain: no control codes at all (no colour either), whatever the stream claims to be
            self._console = (Console(file=self._stream, highlight=False, soft_wrap=True, force_terminal=True)
                             if self.live_mode else
                             Console(file=self._stream, highlight=False, soft_wrap=True, force_terminal=False,
                                     color_system=None))
        return self._console

    # ---------------------------------------------------------------- events
    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler:
            with self._lock:
                handler(event)

    def on_TaskQueued(self, e: ev.TaskQueued) -> None:
        pass                                # waiting for a slot: shown once it starts

    def on_AttemptFailed(self, e: ev.AttemptFailed) -> None:
        pass                                # TaskRetrying or TaskFailed says it

    def on_RunStarted(self, e: ev.RunStarted) -> None:
        self.total = e.total
        self.started = e.time
        self._line(f'run {e.run_id}  ({e.run_dir})', 'bold')
        if self.live_mode and not self.quiet:
            from rich.live import Live
            # redrawn at a fixed rate, whatever the event rate: a 1,000-task loop costs no more
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8,
                              transient=True)
            self._live.start()

    def on_LoopStarted(self, e: ev.LoopStarted) -> None:
        self.loops[e.task] = _Loop(e.tasks)

    def on_EnvBuilding(self, e: ev.EnvBuilding) -> None:
        began, _ = self.building.get(e.task, (e.time, ''))
        if e.task not in self.building and not self.live_mode:
            self._line(f'  env     {e.task}: {e.line.strip()}', 'dim')       # what is being built
        self.building[e.task] = (began, e.line.strip())
        if self.verbose and not self.live_mode:
            self._line(f'    [env] {e.line}', 'dim')

    def on_EnvReady(self, e: ev.EnvReady) -> None:
        began, _ = self.building.pop(e.task, (None, ''))
        if e.built:
            self.env_spans.append((began if began is not None else e.time - e.seconds, e.time))
            self.env_s_of[e.task] = e.seconds
            self._line(f'  env     {e.task}: environment built in {e.seconds:.1f}s', 'dim')

    def on_RunCanceling(self, e: ev.RunCanceling) -> None:
        if e.force:
            self._line(f'{e.signal} again: killing everything now', 'bold yellow')
        else:
            self._line(f'{e.signal}: canceling the run, stopping {e.running} running task(s) '
                       f'(send it again to kill at once)', 'bold yellow')

    def on_TaskStarted(self, e: ev.TaskStarted) -> None:
        self.running[e.task] = e.time
        if not self.live_mode and not self._in_loop(e.task):
            self._line(f'  start   {e.task}' + (f' (attempt {e.attempt})' if e.attempt > 1 else ''))

    def on_TaskSucceeded(self, e: ev.TaskSucceeded) -> None:
        self._done(e, 'done', 'green', 'done')

    def on_TaskCached(self, e: ev.TaskCached) -> None:
        run = (e.cached_from or {}).get('run', '?')
        self._done(e, 'cached', 'cyan', 'cached', f'  (from {run})')

    def on_TaskSkipped(self, e: ev.TaskSkipped) -> None:
        self._done(e, None, '', 'skipped')

    def on_TaskCanceled(self, e: ev.TaskCanceled) -> None:
        self._done(e, None, '', 'skipped')

    def on_TaskFailed(self, e: ev.TaskFailed) -> None:
        self._done(e, 'FAILED', 'bold red', 'failed', f': {e.error}', always=True)
        if e.log_tail and not self.quiet:
            for line in e.log_tail:
                self._line(f'    | {line}', 'red')
        if e.log_path:
            self._line(f'    full log: {e.log_path}', 'red')

    def on_TaskRetrying(self, e: ev.TaskRetrying) -> None:
        self.running.pop(e.task, None)
        self._line(f'  retry   {e.task} after attempt {e.attempt} ({e.error}); waiting {e.delay_s:.0f}s', 'yellow')

    def on_TaskPredicted(self, e: ev.TaskPredicted) -> None:
        if e.prediction == 'CACHED':
            self.would_hit += 1
            self._done(e, 'cached', 'cyan', 'cached', f'  ({e.why})' if e.why else '')
            return
        self.would_run += 1
        word = 'would run' if e.prediction == 'WOULD_RUN' else 'may run'
        self._line(f'  {word} {e.task}: {e.why}', 'yellow')

    def on_Warning(self, e: ev.Warning) -> None:
        self._line(f'warning: {e.message}', 'yellow')

    def on_TaskLog(self, e: ev.TaskLog) -> None:
        if self.verbose:
            self._line(f'  [{e.task}] {e.line}', 'dim')

    def on_RunFinished(self, e: ev.RunFinished) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.explain:
            self.console.print(f'explain-cache: {self.would_hit} task(s) would be served from the cache, '
                               f'{self.would_run} would run')
        elif not self.quiet:
            self.print_summary(e.result)

    # ---------------------------------------------------------------- helpers
    def _line(self, text: str, style: str = '') -> None:
        if self.quiet:
            return
        from rich.text import Text
        target = self._live.console if self._live is not None else self.console
        target.print(Text(text, style=style))

    def _in_loop(self, task: str) -> Optional[_Loop]:
        """The innermost ParallelFor a task belongs to ('a/for-loop-2.3/x' -> 'a/for-loop-2')."""
        parts = task.split('/')
        for i in range(len(parts) - 2, -1, -1):
            m = _ITERATION.match(parts[i])
            if m:
                loop = self.loops.get('/'.join(parts[:i] + [m.group(1)]))
                if loop is not None:
                    return loop
        return None

    def _done(self, e: Event, word: Optional[str], style: str, counter: str, extra: str = '',
              always: bool = False) -> None:
        began = self.running.pop(e.task, None)
        ended = getattr(e, 'tasks', 1)          # a condition skipped whole ends all its tasks
        self.finished += ended
        loop = self._in_loop(e.task)
        if loop is not None:
            setattr(loop, counter, getattr(loop, counter) + ended)
        if word is None:
            return
        if loop is not None and not always:
            if not self.live_mode:
                self._loop_progress(e.task, loop)
            return
        took = f' {e.time - began:.1f}s' if began else ''
        self._line(f'  {word:<8}{e.task}{took}{extra}', style)

    def _loop_progress(self, task: str, loop: _Loop) -> None:
        """Plain mode: a line per tenth of a loop, not per task."""
        if not loop.total:
            return
        tenth = loop.ended * 10 // loop.total
        if tenth > loop.said:
            loop.said = tenth
            name = next(n for n, lp in self.loops.items() if lp is loop)
            skipped = f', {loop.skipped} skipped' if loop.skipped else ''
            self._line(f'  loop    {name}: {loop.ended}/{loop.total} ({loop.done} done, {loop.cached} cached, '
                       f'{loop.failed} failed{skipped})')

    def _render(self):
        """The live view's body, called by rich at its refresh rate on its own thread while
        holding rich's lock: it must not take ours (a handler holds ours while printing
        through rich: the other order would deadlock). It reads copies: a dict is copied
        whole under the GIL."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text
        loops, building, running = dict(self.loops), dict(self.building), dict(self.running)
        now = time.time()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        for name, loop in loops.items():
            if loop.total and loop.ended < loop.total:
                grid.add_row(ProgressBar(total=loop.total, completed=loop.ended, width=30),
                             Text(f'{name}  {loop.ended}/{loop.total}  {loop.cached} cached  '
                                  f'{loop.failed} failed', style='bold'))
        for name, (began, line) in list(building.items())[:_SHOWN_RUNNING]:
            grid.add_row(Text(f'{now - began:6.1f}s env', style='magenta'),
                         Text(f'{name}: {line[:100]}', style='magenta'))
        shown = [n for n in running if self._in_loop(n) is None][:_SHOWN_RUNNING]
        for name in shown:
            grid.add_row(Text(f'{now - running[name]:6.1f}s', style='blue'), Text(name))
        hidden = len(running) - len(shown)
        status = Text(f'{self.finished}/{self.total or "?"} done, {len(running)} running'
                      + (f' ({hidden} not shown)' if hidden > 0 else '')
                      + f'  {now - self.started:.1f}s', style='bold blue')
        return Group(grid, status)

    # ---------------------------------------------------------------- summary
    def env_build_s(self) -> float:
        """Wall time during which at least one environment was being built."""
        total, end = 0.0, None
        for a, b in sorted(self.env_spans):
            if end is None or a > end:
                total += b - a
                end = b
            elif b > end:
                total += b - end
                end = b
        return total

    def print_summary(self, result) -> None:
        from rich.table import Table
        from rich.text import Text
        wall = result.finished - result.started
        env = self.env_build_s()
        split = f' (environment builds {env:.1f}s, tasks {max(0.0, wall - env):.1f}s)' if env else ''
        table = Table(title=f'{result.pipeline}: {result.state.value} in {wall:.1f}s{split}',
                      title_style=_STYLE.get(result.state.value, ''))
        rows = self._summary_rows(result.records)
        # a task's name is what a person looks for: the other columns give way first
        table.add_column('task', min_width=min(48, max((len(row[0]) for row in rows), default=4)))
        for col in ('state', 'time', 'cached from', 'metrics'):
            table.add_column(col)
        for name, state, count, took, cached, metrics in rows:
            table.add_row(name, Text(state + (f' x{count}' if count > 1 else ''), style=_STYLE.get(state, '')),
                          took, cached, metrics)
        self.console.print(table)
        folded = sum(row[2] for row in rows if row[2] > 1)
        if folded:
            where = f' --root {self.root}' if self.root and self.root != '.localrunner' else ''
            self.console.print(Text(f'{folded} loop iterations summed up above; each one: '
                                    f'localrunner runs show {result.run_id}{where}', style='dim'))
        params = result.outputs.parameters
        if params:
            self.console.print('outputs: ' + ', '.join(f'{k}={v!r}' for k, v in params.items()))
        failed = [r for r in result.records if r.state.value == 'FAILED' and r.kind not in ('dag', 'loop')]
        for r in failed:
            where = r.logs[-1] if r.logs else r.task_dir
            self.console.print(Text(f'{r.name} failed: {r.error}' + (f' (log: {where})' if where else ''),
                                    style='red'))

    def _summary_rows(self, records) -> list[tuple[str, str, int, str, str, str]]:
        """(task, state, count, time, cached from, metrics) per row. The same task in more
        than _FOLD_OVER iterations of a ParallelFor, ending in the same state, is one row
        ('for-loop-2.*/train', 'CACHED', 1000, ...) where its first iteration would be: a 1,000-way loop
        is a few lines, not a thousand (the result JSON and the run's records keep every
        one). A failure is never folded: each has its own row."""
        loops = {r.name for r in records if r.kind == 'loop'}
        groups: dict[tuple, list] = {}
        for r in records:
            if r.kind in ('dag', 'loop', 'condition') and r.state.value != 'FAILED':
                continue
            pattern = _iterations_of(r.name, loops) if r.state.value != 'FAILED' else None
            groups.setdefault((pattern, r.state.value) if pattern else (r.name, id(r)), []).append(r)
        rows = []
        for (pattern, _), members in groups.items():
            if len(members) <= _FOLD_OVER:
                rows.extend(self._row(r) for r in members)
                continue
            took = _span([t for t in (self._own_time(r) for r in members) if t is not None])
            runs = {_cached_run(r) for r in members if r.cached_from}
            cached = next(iter(runs)) if len(runs) == 1 else (f'{len(runs)} runs' if runs else '')
            rows.append((pattern, members[0].state.value, len(members), took, cached, _metric_ranges(members)))
        return rows

    def _own_time(self, r) -> Optional[float]:
        """A task's own seconds: without the time its environment took to build."""
        if not (r.started and r.finished):
            return None
        return max(0.0, r.finished - r.started - self.env_s_of.get(r.name, 0.0))

    def _row(self, r) -> tuple[str, str, int, str, str, str]:
        own = self._own_time(r)
        took = '' if own is None else (f'{own:.1f}s' + (f' +{self.env_s_of[r.name]:.0f}s env'
                                                          if r.name in self.env_s_of else ''))
        return r.name, r.state.value, 1, took, _cached_run(r), _metrics(r)


def _iterations_of(name: str, loops: set[str]) -> Optional[str]:
    """The task's name with each ParallelFor iteration number made '*'
    ('a/for-loop-2.3/x' -> 'a/for-loop-2.*/x'), or None when it is in no loop."""
    parts = name.split('/')
    folded = False
    for i, part in enumerate(parts[:-1]):
        m = _ITERATION.match(part)
        if m and '/'.join(parts[:i] + [m.group(1)]) in loops:
            parts[i] = m.group(1) + '.*'
            folded = True
    return '/'.join(parts) if folded else None


def _cached_run(record) -> str:
    """The run a cached task's outputs came from ('' when it was not served from the cache)."""
    return (record.cached_from or {}).get('run', '')


def _span(seconds: list[float]) -> str:
    """'0.2-0.3s', or '0.2s' when both ends print alike; '' for no times."""
    if not seconds:
        return ''
    low, high = f'{min(seconds):.1f}', f'{max(seconds):.1f}'
    return f'{low}s' if low == high else f'{low}-{high}s'


def _metric_values(record) -> dict[str, float]:
    """The task's numeric metrics (its system.Metrics artifacts), by name, in order."""
    values: dict[str, float] = {}
    for lst in (record.outputs.artifacts.values() if record.outputs else ()):
        for a in lst:
            if a.schema_title in _METRIC_TYPES:
                for k, v in a.metadata.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        values.setdefault(k, v)
    return values


def _metrics(record) -> str:
    return ' '.join(f'{k}={v:.4g}' for k, v in list(_metric_values(record).items())[:4])


def _metric_ranges(records) -> str:
    """Each metric's lowest and highest value over the folded iterations."""
    seen: dict[str, list[float]] = {}
    for r in records:
        for k, v in _metric_values(r).items():
            seen.setdefault(k, []).append(v)
    return ' '.join(f'{k}={min(v):.4g}' + (f'..{max(v):.4g}' if max(v) != min(v) else '')
                    for k, v in list(seen.items())[:4])
