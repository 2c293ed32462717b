"""What a person sees: a live view while running (rich, on a terminal), plain lines otherwise,
then a summary table. A subscriber of the engine's events; the engine itself never prints."""
from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from localrunner.engine import events as ev
from localrunner.engine.events import Event, handler_table

_STYLE = {'SUCCEEDED': 'green', 'CACHED': 'cyan', 'FAILED': 'bold red', 'SKIPPED': 'dim', 'CANCELED': 'yellow'}
_METRIC_TYPES = ('system.Metrics',)


class ConsoleView:
    def __init__(self, stream: TextIO = sys.stdout, quiet: bool = False, live: Optional[bool] = None,
                 explain: bool = False, verbose: bool = False):
        self.explain = explain
        self.verbose = verbose
        self.would_run = 0
        self.would_hit = 0
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live_mode = self.console.is_terminal if live is None else live
        self.running: dict[str, float] = {}
        self.finished = 0
        self.total = 0
        self.started = time.time()
        self._lock = threading.Lock()
        self._live: Optional[Live] = None
        self._handlers = handler_table(self)

    # ---------------------------------------------------------------- events
    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler:
            with self._lock:
                handler(event)

    # events the console shows nothing for (listed, so a new event type is a decision)
    def on_TaskQueued(self, e: ev.TaskQueued) -> None:
        pass

    def on_LoopStarted(self, e: ev.LoopStarted) -> None:
        pass

    def on_EnvReady(self, e: ev.EnvReady) -> None:
        pass

    def on_AttemptFailed(self, e: ev.AttemptFailed) -> None:
        pass

    def _line(self, text: str, style: str = '') -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(Text(text, style=style))
        else:
            self.console.print(Text(text, style=style))

    def on_RunStarted(self, e: ev.RunStarted) -> None:
        self.total = e.total
        self.started = e.time
        self._line(f'run {e.run_id}  ({e.run_dir})', 'bold')
        if self.live_mode and not self.quiet:
            self._live = Live(self._status(), console=self.console, refresh_per_second=8, transient=True)
            self._live.start()

    def on_RunCanceling(self, e: ev.RunCanceling) -> None:
        if e.force:
            self._line(f'{e.signal} again: killing everything now', 'bold yellow')
        else:
            self._line(f'{e.signal}: canceling the run, stopping {e.running} running task(s) '
                       f'(send it again to kill at once)', 'bold yellow')

    def on_TaskStarted(self, e: ev.TaskStarted) -> None:
        self.running[e.task] = e.time
        attempt = e.attempt
        if not self.live_mode:
            self._line(f'  start   {e.task}' + (f' (attempt {attempt})' if attempt > 1 else ''))
        self._refresh()

    def _done(self, e: Event, word: str, style: str, extra: str = '') -> None:
        began = self.running.pop(e.task, None)
        self.finished += 1
        took = f' {e.time - began:.1f}s' if began else ''
        self._line(f'  {word:<8}{e.task}{took}{extra}', style)
        self._refresh()

    def on_TaskSucceeded(self, e: ev.TaskSucceeded) -> None:
        self._done(e, 'done', 'green')

    def on_TaskCached(self, e: ev.TaskCached) -> None:
        run = (e.cached_from or {}).get('run', '?')
        self._done(e, 'cached', 'cyan', f'  (from {run})')

    def on_TaskSkipped(self, e: ev.TaskSkipped) -> None:
        self.finished += 1
        self._refresh()

    def on_TaskCanceled(self, e: ev.TaskCanceled) -> None:
        self.running.pop(e.task, None)
        self.finished += 1
        self._refresh()

    def on_TaskFailed(self, e: ev.TaskFailed) -> None:
        self._done(e, 'FAILED', 'bold red', f': {e.error}')
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
            self._done(e, 'cached', 'cyan', f'  ({e.why})' if e.why else '')
            return
        self.would_run += 1
        word = 'would run' if e.prediction == 'WOULD_RUN' else 'may run'
        self._line(f'  {word} {e.task}: {e.why}', 'yellow')

    def on_Warning(self, e: ev.Warning) -> None:
        self._line(f'warning: {e.message}', 'yellow')

    def on_TaskLog(self, e: ev.TaskLog) -> None:
        if self.verbose:
            self._line(f'  [{e.task}] {e.line}', 'dim')

    def on_EnvBuilding(self, e: ev.EnvBuilding) -> None:
        if e.line.startswith('building environment') or e.line.startswith('[localrunner] building'):
            self._line(f'  {e.line}', 'dim')

    def on_RunFinished(self, e: ev.RunFinished) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.explain:
            self.console.print(f'explain-cache: {self.would_hit} task(s) would be served from the cache, '
                               f'{self.would_run} would run')
        elif not self.quiet:
            self.print_summary(e.result)

    # ---------------------------------------------------------------- live status
    def _status(self) -> Text:
        names = ', '.join(list(self.running)[:4]) + (' ...' if len(self.running) > 4 else '')
        return Text(f'  {self.finished} done, {len(self.running)} running  '
                    f'{time.time() - self.started:.1f}s  {names}', style='bold blue')

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._status())

    # ---------------------------------------------------------------- summary
    def print_summary(self, result) -> None:
        table = Table(title=f'{result.pipeline}: {result.state.value} in {result.finished - result.started:.1f}s',
                      title_style=_STYLE.get(result.state.value, ''))
        for col in ('task', 'state', 'time', 'cached from', 'metrics'):
            table.add_column(col)
        for r in result.records:
            if r.kind in ('dag', 'loop', 'condition') and r.state != 'FAILED':
                continue
            took = f'{r.finished - r.started:.1f}s' if r.started and r.finished else ''
            cached = (r.cached_from or {}).get('run', '') if r.cached_from else ''
            table.add_row(r.name, Text(r.state.value, style=_STYLE.get(r.state.value, '')), took, cached,
                          _metrics(r))
        self.console.print(table)
        params = result.outputs.parameters
        if params:
            self.console.print('outputs: ' + ', '.join(f'{k}={v!r}' for k, v in params.items()))
        failed = [r for r in result.records if r.state.value == 'FAILED' and r.kind not in ('dag', 'loop')]
        for r in failed:
            where = r.logs[-1] if r.logs else r.task_dir
            self.console.print(Text(f'{r.name} failed: {r.error}' + (f' (log: {where})' if where else ''),
                                    style='red'))


def _metrics(record) -> str:
    if not record.outputs:
        return ''
    shown = []
    for lst in record.outputs.artifacts.values():
        for a in lst:
            if a.schema_title in _METRIC_TYPES:
                for k, v in a.metadata.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        shown.append(f'{k}={v:.4g}')
    return ' '.join(shown[:4])
