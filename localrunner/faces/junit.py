"""`run --junit-xml FILE`: the run as a JUnit XML report, so CI systems (GitHub Actions test
reporters, GitLab, Jenkins) show task failures natively. One test case per leaf task
(container or importer), named by its task path, classname the pipeline — and one for each
condition that was false (its tasks never existed, but they were skipped all the same):

    FAILED            <failure> with the error and the tail of the last attempt's log
    SKIPPED/CANCELED  <skipped> with why
    CACHED            passes; property state=CACHED and cached_from, a <system-out> line saying so
    SUCCEEDED         passes

The schema followed is the common one (Ant's, as Jenkins' xunit and pytest --junitxml write it)."""
from __future__ import annotations

import datetime
import os
import re
import socket
import xml.etree.ElementTree as ET
from typing import Optional

from localrunner.errors import UsageError
from localrunner.faces.history import BadResult, RunRecord, check_result, leaf_tasks, log_tail

LOG_LINES = 50
_ANSI = re.compile(r'\x1b\[[0-9;?]*[ -/]*[@-~]')
# XML 1.0 forbids most control characters, even escaped; a log full of them must still parse
_NOT_XML = re.compile('[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


def _clean(text: str) -> str:
    return _NOT_XML.sub('\ufffd', _ANSI.sub('', text))


def _seconds(value: Optional[float]) -> str:
    return f'{value or 0:.3f}'


def _property(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, 'property', name=name, value=_clean(value))


def _failure(record: RunRecord, task: dict) -> tuple[str, str]:
    """(message, text) of a failed task: the error with the log's last line (usually the
    exception), and the error followed by the log's tail."""
    error = task.get('error') or 'failed'
    parts = [error]
    message = error.splitlines()[0] if error.strip() else 'failed'
    logs = task.get('logs') or []
    if logs:
        path = record.local(logs[-1])
        tail = log_tail(path, LOG_LINES)
        parts.append(f'--- last {LOG_LINES} lines of attempt {len(logs)} ({path or logs[-1]}) ---')
        parts.append('\n'.join(tail) if tail is not None else '(log missing)')
        last = next((line.strip() for line in reversed(tail or []) if line.strip()), '')
        if last and last not in message:
            message = f'{message}: {last}'
    return _clean(message)[:500], _clean('\n'.join(parts))


def _cases(result: dict) -> list[dict]:
    """The leaf tasks, plus each skipped or canceled group none of whose tasks has a record (a
    condition that was false: its tasks never came to exist, but CI should see them skipped)."""
    tasks = leaf_tasks(result)
    names = [t['name'] for t in tasks]
    for t in result['tasks']:
        if t not in tasks and t['state'] in ('SKIPPED', 'CANCELED') and not any(
                n.startswith(t['name'] + '/') or n.startswith(t['name'] + '.') for n in names):
            tasks.append(t)
    return tasks


def build(result: dict) -> ET.ElementTree:
    try:
        check_result(result)
    except BadResult as e:
        raise UsageError(f'--junit-xml: the result document is not usable: {e}') from None
    record = RunRecord(result.get('run_id') or '', result.get('run_dir') or '.', result, None, False)
    pipeline = _clean(result.get('pipeline') or 'pipeline')
    tasks = _cases(result)
    failures = sum(1 for t in tasks if t['state'] == 'FAILED')
    skipped = sum(1 for t in tasks if t['state'] in ('SKIPPED', 'CANCELED'))
    errors = sum(1 for t in tasks if t['state'] not in ('FAILED', 'SKIPPED', 'CANCELED', 'SUCCEEDED', 'CACHED'))
    total = _seconds(result.get('duration_s'))
    counts = dict(tests=str(len(tasks)), failures=str(failures), errors=str(errors), skipped=str(skipped), time=total)
    suites = ET.Element('testsuites', name='localrunner', **counts)
    started = result.get('started')
    stamp = datetime.datetime.fromtimestamp(started).isoformat(timespec='seconds') if started else ''
    suite = ET.SubElement(suites, 'testsuite', name=pipeline, timestamp=stamp, hostname=socket.gethostname(), **counts)
    props = ET.SubElement(suite, 'properties')
    _property(props, 'run_id', result.get('run_id') or '')
    _property(props, 'state', result['state'])
    if result.get('run_dir'):
        _property(props, 'run_dir', result['run_dir'])
    for task in tasks:
        case = ET.SubElement(suite, 'testcase', classname=pipeline, name=_clean(task['name']),
                             time=_seconds(task.get('duration_s')))
        state = task['state']
        case_props = ET.SubElement(case, 'properties')
        _property(case_props, 'state', state)
        _property(case_props, 'attempts', str(task.get('attempts') or 0))
        source = task.get('cached_from') or {}
        if state == 'FAILED':
            message, text = _failure(record, task)
            ET.SubElement(case, 'failure', message=message, type='TaskFailed').text = text
        elif state in ('SKIPPED', 'CANCELED'):
            why = task.get('reason') or task.get('error') or (
                'the run was canceled' if state == 'CANCELED'
                else 'its condition was false' if task.get('type') == 'condition'
                else 'an upstream task failed or was skipped')
            ET.SubElement(case, 'skipped', message=_clean(f'{state.lower()}: {why}'))
        elif state == 'CACHED':
            _property(case_props, 'cached_from', f'{source.get("run", "")}/{source.get("task", "")}')
            ET.SubElement(case, 'system-out').text = _clean(
                f'CACHED: served from run {source.get("run", "?")} task {source.get("task", "?")} (no process ran)')
        elif state != 'SUCCEEDED':
            ET.SubElement(case, 'error', message=_clean(f'task ended {state}'), type='TaskState')
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(result_json: dict, path: str) -> str:
    """Writes the JUnit XML of a run (atomically); returns its absolute path."""
    tree = build(result_json)
    path = os.path.abspath(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        tree.write(tmp, encoding='utf-8', xml_declaration=True)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f'--junit-xml {path}: {e.strerror}') from None
    return path
