"""The conformance harness: runs one case folder with the real CLI and checks what it must
produce. The case format is described in tests/conformance/README.md.

    python -m tests.conformance.harness [CASE_DIR ...] [--keep]   # default: every case

Each case runs in a fresh temporary folder: ROOT (the run root and cache, shared by the
case's runs and nothing else), SCRATCH (what "$CASE_TMP" stands for) and the result files.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Optional

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CASES_DIR = os.path.join(HERE, 'cases')
DEFAULT_TIMEOUT_S = 180
NOT_RUN = ('SKIPPED', 'CANCELED')
EXECUTED = ('SUCCEEDED', 'FAILED')           # ran for real this time (CACHED did not)
LEAF_TYPES = ('container', 'importer')
PREDICTIONS = ('CACHED', 'WOULD_RUN', 'MAY_RUN')
# the run-time env the case controls; never inherited from whoever runs the tests
CONTROLLED_ENV = ('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT',)
# a dry run without the `prediction` field: the engine does not produce it yet
PREDICTIONS_UNAVAILABLE = 'dry-run predictions: not yet implemented'


class CaseError(Exception):
    """The case folder itself is wrong (not the engine): bad JSON, unknown field, missing file."""


@dataclasses.dataclass
class Problem:
    text: str
    kind: str = 'mismatch'       # or 'predictions-unavailable'

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass
class RunRecord:
    """One invocation of the CLI."""
    label: str
    argv: list
    rc: Optional[int]
    result: Optional[dict]
    output: str                  # stdout + stderr
    stderr: str


@dataclasses.dataclass
class CaseReport:
    name: str
    problems: list = dataclasses.field(default_factory=list)
    runs: list = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def only_predictions_unavailable(self) -> bool:
        return bool(self.problems) and all(p.kind == 'predictions-unavailable' for p in self.problems)

    def explain(self, tail: int = 3000) -> str:
        """The problems, then the command lines and the end of each run's output."""
        lines = [f'{self.name}: {len(self.problems)} problem(s)'] + [f'  - {p}' for p in self.problems]
        for r in self.runs:
            lines.append(f'--- {r.label}: exit {r.rc}: {" ".join(r.argv)}')
            lines.append(r.output[-tail:])
        return '\n'.join(lines)


# ---------------------------------------------------------------------------- values


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _show(v, n: int = 160) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= n else s[:n - 3] + '...'


_TYPES = {
    'string': lambda v: isinstance(v, str),
    'number': _number,
    'integer': lambda v: _number(v) and float(v).is_integer(),
    'boolean': lambda v: isinstance(v, bool),
    'list': lambda v: isinstance(v, list),
    'object': lambda v: isinstance(v, dict),
    'null': lambda v: v is None,
}


def is_matcher(exp) -> bool:
    return isinstance(exp, dict) and len(exp) == 1 and next(iter(exp)).startswith('$')


def match(exp, act, where: str = 'value') -> Optional[str]:
    """None when `act` matches `exp`, else one line saying why not. JSON values compare by
    value (1 == 1.0; true != 1); a one-key object whose key starts with '$' is a matcher."""
    if is_matcher(exp):
        op, arg = next(iter(exp.items()))
        if op == '$oneOf':
            return None if any(match(e, act) is None for e in arg) else f'{where}: {_show(act)} is none of {_show(arg)}'
        if op == '$regex':
            return None if isinstance(act, str) and re.search(arg, act) else f'{where}: {_show(act)} does not match /{arg}/'
        if op == '$contains':
            if isinstance(act, str) and isinstance(arg, str) and arg in act:
                return None
            if isinstance(act, list) and any(match(arg, a) is None for a in act):
                return None
            return f'{where}: {_show(act)} does not contain {_show(arg)}'
        if op == '$type':
            if arg not in _TYPES:
                raise CaseError(f'{where}: unknown $type {arg!r}')
            return None if _TYPES[arg](act) else f'{where}: {_show(act)} is not of type {arg}'
        if op == '$len':
            return None if isinstance(act, (str, list, dict)) and len(act) == arg else \
                f'{where}: {_show(act)} does not have length {arg}'
        raise CaseError(f'{where}: unknown matcher {op}')
    if isinstance(exp, bool) or isinstance(act, bool):
        return None if type(exp) is type(act) and exp == act else f'{where}: expected {_show(exp)}, got {_show(act)}'
    if _number(exp):
        ok = _number(act) and abs(float(exp) - float(act)) <= 1e-9 * max(1.0, abs(float(exp)))
        return None if ok else f'{where}: expected {_show(exp)}, got {_show(act)}'
    if isinstance(exp, list):
        if not isinstance(act, list) or len(act) != len(exp):
            return f'{where}: expected {_show(exp)}, got {_show(act)}'
        for i, (e, a) in enumerate(zip(exp, act)):
            why = match(e, a, f'{where}[{i}]')
            if why:
                return why
        return None
    if isinstance(exp, dict):
        if not isinstance(act, dict) or set(act) != set(exp):
            return f'{where}: expected {_show(exp)}, got {_show(act)}'
        for k in sorted(exp):
            why = match(exp[k], act[k], f'{where}.{k}')
            if why:
                return why
        return None
    return None if exp == act and type(exp) is type(act) else f'{where}: expected {_show(exp)}, got {_show(act)}'


def substitute(obj, values: dict[str, str]):
    """Replaces each placeholder ("$CASE_TMP") inside every string of a JSON value."""
    if isinstance(obj, str):
        for k, v in values.items():
            obj = obj.replace(k, v)
        return obj
    if isinstance(obj, list):
        return [substitute(x, values) for x in obj]
    if isinstance(obj, dict):
        return {substitute(k, values): substitute(v, values) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------- result checks


def read_artifact(path: Optional[str]):
    """A file's text, a folder's sorted listing, None when nothing is there."""
    if path and os.path.isfile(path):
        with open(path, errors='replace') as f:
            return f.read()
    if path and os.path.isdir(path):
        return sorted(os.listdir(path))
    return None


def check_outputs(exp: dict, act: dict, where: str) -> list[Problem]:
    """`outputs` = {"parameters": {name: VALUE}, "artifacts": {name: {count, contents, metadata}}}."""
    problems = []
    act = act if isinstance(act, dict) else {}
    params = act.get('parameters') or {}
    for name, value in (exp.get('parameters') or {}).items():
        if name not in params:
            problems.append(Problem(f'{where}output parameter {name!r} missing (has {sorted(params)})'))
        elif (why := match(value, params[name], f'{where}output parameter {name!r}')):
            problems.append(Problem(why))
    arts = act.get('artifacts') or {}
    for name, spec in (exp.get('artifacts') or {}).items():
        got = arts.get(name)
        if got is None:
            problems.append(Problem(f'{where}output artifact {name!r} missing (has {sorted(arts)})'))
            continue
        got = got if isinstance(got, list) else [got]
        label = f'{where}output artifact {name!r}'
        if 'count' in spec and len(got) != spec['count']:
            problems.append(Problem(f'{label}: {len(got)} artifact(s), expected {spec["count"]}'))
            continue
        if 'contents' in spec:
            contents = [read_artifact(a.get('path')) for a in got]
            if (why := match(spec['contents'], contents, f'{label} contents')):
                problems.append(Problem(why))
        for i, a in enumerate(got):
            metadata = a.get('metadata') or {}
            for key, value in (spec.get('metadata') or {}).items():
                if key not in metadata:
                    problems.append(Problem(f'{label}[{i}] metadata has no {key!r} (has {sorted(metadata)})'))
                elif (why := match(value, metadata[key], f'{label}[{i}].metadata.{key}')):
                    problems.append(Problem(why))
    return problems


def last_entries(result: dict) -> dict[str, dict]:
    """Task name -> its last entry (a retried or re-entered task may appear several times)."""
    out = {}
    for t in result.get('tasks') or []:
        if isinstance(t, dict) and isinstance(t.get('name'), str):
            out[t['name']] = t
    return out


def all_states(result: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in result.get('tasks') or []:
        out.setdefault(t.get('name'), []).append(str(t.get('state')))
    return out


def check_tasks(expected: list, result: dict, strict: bool, where: str) -> list[Problem]:
    """Task states: SUCCEEDED also accepts CACHED unless `strict` (reruns); SKIPPED/CANCELED
    mean "must not have run" (absent, or present only as SKIPPED/CANCELED); the last entry
    of a name decides. An entry may also check `attempts` and `outputs`."""
    problems = []
    entries, states = last_entries(result), all_states(result)
    for exp in expected or []:
        name, want = exp['name'], exp['state']
        got = states.get(name)
        if want in NOT_RUN:
            if got and not all(s in NOT_RUN for s in got):
                problems.append(Problem(f'{where}task {name}: must not have run, got {"/".join(got)}'))
            continue
        if got is None:
            problems.append(Problem(f'{where}task {name}: missing (expected {want}); tasks: '
                                    f'{sorted(n for n in states if n)}'))
            continue
        allowed = {want} | ({'CACHED'} if want == 'SUCCEEDED' and not strict else set())
        if got[-1] not in allowed:
            error = entries[name].get('error')
            problems.append(Problem(f'{where}task {name}: expected {want}, got {"/".join(got)}'
                                    + (f' ({error})' if error else '')))
            continue
        if 'attempts' in exp and (why := match(exp['attempts'], entries[name].get('attempts'),
                                                f'{where}task {name} attempts')):
            problems.append(Problem(why))
        if 'outputs' in exp:
            problems += check_outputs(exp['outputs'], entries[name].get('outputs'), f'{where}task {name}: ')
    return problems


def task_outputs(result: dict, name: str) -> Optional[dict]:
    """What identifies a task's result: its output parameters and its artifacts' digests."""
    t = last_entries(result).get(name)
    if t is None:
        return None
    outs = t.get('outputs') or {}
    return {'parameters': outs.get('parameters') or {},
            'artifacts': {k: [a.get('digest') for a in v] for k, v in (outs.get('artifacts') or {}).items()}}


def _comparable(result: dict, name: str, where: str, problems: list) -> Optional[dict]:
    out = task_outputs(result, name)
    if out is None:
        problems.append(Problem(f'{where}task {name}: missing, cannot compare its outputs'))
    elif not out['parameters'] and not out['artifacts']:
        problems.append(Problem(f'{where}task {name}: has no outputs to compare'))
        return None
    return out


def check_comparisons(spec: dict, result: dict, first: Optional[dict], where: str) -> list[Problem]:
    """`differs`/`same`: a task's outputs against the first run's; `outputs_differ` /
    `outputs_equal`: pairs of tasks within this run."""
    problems = []
    for key, want_equal in (('same', True), ('differs', False)):
        for name in spec.get(key) or []:
            if first is None:
                raise CaseError(f'{where}{key}: only a rerun can compare with the first run')
            now, before = _comparable(result, name, where, problems), _comparable(first, name, 'first run: ', problems)
            if now is None or before is None:
                continue
            if (now == before) != want_equal:
                verb = 'the same as' if not want_equal else 'different from'
                problems.append(Problem(f'{where}task {name}: outputs {_show(now)} are {verb} the first '
                                        f'run\'s {_show(before)}'))
    for key, want_equal in (('outputs_equal', True), ('outputs_differ', False)):
        for group in spec.get(key) or []:
            outs = [_comparable(result, n, where, problems) for n in group]
            if any(o is None for o in outs):
                continue
            distinct = {json.dumps(o, sort_keys=True) for o in outs}
            if want_equal and len(distinct) != 1:
                problems.append(Problem(f'{where}tasks {group}: outputs differ: {_show(outs)}'))
            if not want_equal and len(distinct) != len(outs):
                problems.append(Problem(f'{where}tasks {group}: outputs are not all different: {_show(outs)}'))
    return problems


def check_run(spec: dict, run: RunRecord, strict: bool, where: str) -> list[Problem]:
    """Exit code, run state, pipeline outputs and task states of one run."""
    problems = []
    state = spec.get('state', 'SUCCEEDED')
    want_rc = spec.get('exit_code', {'SUCCEEDED': 0, None: 2}.get(state, 1))
    if run.rc != want_rc:
        problems.append(Problem(f'{where}exit code {run.rc}, expected {want_rc}'))
    if state is None:                       # invalid input: refused before anything ran
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        if len(lines) != 1 or 'Traceback' in run.stderr:
            problems.append(Problem(f'{where}expected one line on stderr, got {len(lines)}: {_show(run.stderr, 300)}'))
        if 'message' in spec and (why := match(spec['message'], run.stderr.strip(), f'{where}stderr')):
            problems.append(Problem(why))
        return problems
    if run.result is None:
        return problems + [Problem(f'{where}no result JSON was written')]
    if run.result.get('state') != state:
        problems.append(Problem(f'{where}run state {run.result.get("state")!r}, expected {state!r}'))
    problems += check_outputs(spec.get('outputs') or {}, run.result.get('outputs'), where)
    problems += check_tasks(spec.get('tasks'), run.result, strict, where)
    return problems


# ---------------------------------------------------------------------------- compiled form


def ir_task(spec: dict, path: str) -> dict:
    """The IR task at '/'-joined `path` (no loop indices), descending through sub-DAGs."""
    tasks, task = spec['root']['dag']['tasks'], None
    for i, part in enumerate(path.split('/')):
        if part not in tasks:
            raise CaseError(f'compiled_form: no IR task {path!r} (at {part!r}; has {sorted(tasks)})')
        task = tasks[part]
        if i < len(path.split('/')) - 1:
            tasks = spec['components'][task['componentRef']['name']].get('dag', {}).get('tasks', {})
    return task


def check_compiled_form(expected: dict, pipeline_path: str, where: str) -> list[Problem]:
    """`compiled_form.tasks`: {IR task path: {field: VALUE or null (= absent)}}; the pseudo
    field `image` is the task's executor image."""
    with open(pipeline_path) as f:
        spec = next(yaml.safe_load_all(f))
    problems = []
    for path, fields in (expected.get('tasks') or {}).items():
        task = ir_task(spec, path)
        for field, want in fields.items():
            if field == 'image':
                label = spec['components'][task['componentRef']['name']].get('executorLabel')
                got = spec['deploymentSpec']['executors'][label]['container']['image'] if label else None
            else:
                got = task.get(field)
            if want is None:
                if field in task:
                    problems.append(Problem(f'{where}compiled task {path}: {field} must be absent, is {_show(got)}'))
            elif field not in task and field != 'image':
                problems.append(Problem(f'{where}compiled task {path}: no {field} (expected {_show(want)})'))
            elif (why := match(want, got, f'{where}compiled task {path} {field}')):
                problems.append(Problem(why))
    return problems


# ---------------------------------------------------------------------------- dry-run predictions


def _covering(name: str, predicted: dict[str, str]) -> Optional[tuple[str, str]]:
    """The dry run's entry for a real task: itself; the entry for any iteration of a loop
    whose count the dry run could not know ('a/for-loop-2.*/b' covers 'a/for-loop-2.1/b');
    or the nearest enclosing DAG/loop it listed as WOULD_RUN/MAY_RUN. 'a/for-loop-2.1/b' is
    enclosed by 'a/for-loop-2.1', 'a/for-loop-2' and 'a'."""
    if name in predicted:
        return name, predicted[name]
    for pattern, prediction in predicted.items():
        if '.*' in pattern and fnmatch.fnmatchcase(name, pattern) and prediction in ('WOULD_RUN', 'MAY_RUN'):
            return pattern, prediction
    parts = name.split('/')
    for i in range(len(parts) - 1, 0, -1):
        prefix = '/'.join(parts[:i])
        candidates = [prefix]
        if re.search(r'\.\d+$', parts[i - 1]):          # the loop task itself
            candidates.append('/'.join(parts[:i - 1] + [parts[i - 1].rsplit('.', 1)[0]]))
        for c in candidates:
            if predicted.get(c) in ('WOULD_RUN', 'MAY_RUN'):
                return c, predicted[c]
    return None


def check_predictions(dry: dict, real: dict, where: str) -> list[Problem]:
    """A dry run's per-task `prediction` against the real run that followed it:
    - every leaf task the real run reached (SUCCEEDED, FAILED, CACHED) is in the dry run's
      task list (itself, or an enclosing loop/DAG predicted WOULD_RUN or MAY_RUN);
    - every task it executed (SUCCEEDED, FAILED) was predicted WOULD_RUN or MAY_RUN;
    - every leaf task predicted CACHED was served from the cache (CACHED).
    Leaf tasks are executor tasks (container, importer); a DAG's own state says nothing of
    the cache."""
    tasks = [t for t in dry.get('tasks') or [] if isinstance(t, dict)]
    if tasks and not any('prediction' in t for t in tasks):
        return [Problem(f'{where}dry run: no task carries a "prediction" field ({PREDICTIONS_UNAVAILABLE})',
                        kind='predictions-unavailable')]
    problems = []
    predicted: dict[str, str] = {}           # every entry with a prediction (loops and DAGs too)
    leaves: dict[str, str] = {}              # executor tasks: the CACHED rule applies to these
    for t in tasks:
        if t.get('type') in LEAF_TYPES and 'prediction' not in t:
            problems.append(Problem(f'{where}dry run: task {t["name"]} has no prediction'))
        if 'prediction' in t:
            if t['prediction'] not in PREDICTIONS:
                problems.append(Problem(f'{where}dry run: task {t["name"]}: unknown prediction {t["prediction"]!r}'))
            predicted[t['name']] = t['prediction']
            if t.get('type') in LEAF_TYPES:
                leaves[t['name']] = t['prediction']
    real_states = {n: t.get('state') for n, t in last_entries(real).items() if t.get('type') in LEAF_TYPES}
    for name, state in sorted(real_states.items()):
        if state not in EXECUTED + ('CACHED',):
            continue
        cover = _covering(name, predicted)
        if cover is None:
            problems.append(Problem(f'{where}task {name} ({state}) is not in the dry run\'s task list'))
        elif state in EXECUTED and cover[1] not in ('WOULD_RUN', 'MAY_RUN'):
            problems.append(Problem(f'{where}task {name} executed ({state}) but the dry run predicted '
                                    f'{cover[1]} for {cover[0]}'))
    for name, prediction in sorted(leaves.items()):
        if prediction == 'CACHED' and real_states.get(name) != 'CACHED':
            problems.append(Problem(f'{where}task {name}: predicted CACHED, the real run has '
                                    f'{real_states.get(name, "no such task")}'))
    return problems


# ---------------------------------------------------------------------------- running

KNOWN_FIELDS = {'state', 'exit_code', 'message', 'outputs', 'tasks', 'rerun', 'timeout_s', 'env', 'extra_args',
                'files', 'pipeline', 'params', 'same', 'differs', 'outputs_equal', 'outputs_differ',
                'compiled_form', 'dry_run', 'xfail', 'features', 'notes', 'oracle', 'source'}
RUN_FIELDS = KNOWN_FIELDS - {'rerun', 'timeout_s', 'xfail', 'features', 'notes', 'oracle', 'source'}


def load_case(case_dir: str) -> tuple[dict, dict]:
    try:
        with open(os.path.join(case_dir, 'expected.json')) as f:
            expected = json.load(f)
        params = {}
        if os.path.exists(os.path.join(case_dir, 'params.json')):
            with open(os.path.join(case_dir, 'params.json')) as f:
                params = json.load(f)
    except (OSError, ValueError) as e:
        raise CaseError(f'{case_dir}: {e}') from None
    unknown = set(expected) - KNOWN_FIELDS
    if unknown:
        raise CaseError(f'{case_dir}/expected.json: unknown field(s) {sorted(unknown)}')
    for spec in run_specs(expected)[1:]:
        if set(spec) - RUN_FIELDS:
            raise CaseError(f'{case_dir}/expected.json: rerun has unknown field(s) {sorted(set(spec) - RUN_FIELDS)}')
    return expected, params


def run_specs(expected: dict) -> list[dict]:
    """The first run's spec (the top level), then each rerun's."""
    rerun = expected.get('rerun') or []
    return [expected] + (rerun if isinstance(rerun, list) else [rerun])


def invoke(argv: list, cwd: str, env: dict, timeout_s: float, label: str, result_path: str) -> RunRecord:
    """Runs the CLI in its own process group (a timeout kills every task process it started)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc, err = None, err + f'\n[harness] killed after {timeout_s}s'
    result = None
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    return RunRecord(label, argv, rc, result, (out or '') + (err or ''), err or '')


def run_case(case_dir: str, keep: bool = False) -> CaseReport:
    """Runs every run of the case in one fresh root; returns what did not match."""
    case_dir = os.path.abspath(case_dir)
    name = os.path.basename(case_dir)
    expected, params = load_case(case_dir)
    report = CaseReport(name)
    work = tempfile.mkdtemp(prefix=f'conformance-{name[:40]}-')
    scratch = os.path.join(work, 'scratch')
    os.makedirs(scratch)
    values = {'$CASE_TMP': scratch}
    timeout_s = max(DEFAULT_TIMEOUT_S, expected.get('timeout_s', 0))
    try:
        first_result = None
        for i, spec in enumerate(run_specs(substitute(expected, values))):
            where = '' if i == 0 else f'rerun {i}: ' if len(run_specs(expected)) > 2 else 'rerun: '
            pipeline = os.path.join(case_dir, spec.get('pipeline', 'pipeline.yaml'))
            if not os.path.exists(pipeline):
                raise CaseError(f'{name}: no {os.path.relpath(pipeline, case_dir)}')
            if 'compiled_form' in spec:
                report.problems += check_compiled_form(spec['compiled_form'], pipeline, where)
            for path, text in (spec.get('files') or {}).items():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write(text)
            params_path = os.path.join(work, f'params-{i}.json')
            with open(params_path, 'w') as f:
                json.dump(substitute(spec.get('params', params), values), f)
            env = {k: v for k, v in os.environ.items() if k not in CONTROLLED_ENV}
            env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
            env.update(spec.get('env') or {})
            base = [sys.executable, '-m', 'localrunner.cli', 'run', pipeline, '--params-file', params_path,
                    '--root', os.path.join(work, 'root')]
            dry = None
            if spec.get('dry_run'):
                path = os.path.join(work, f'dry-{i}.json')
                dry = invoke(base + ['--result-json', path, '--dry-run', *spec.get('extra_args', [])], work, env,
                             timeout_s, f'{where}dry run', path)
                report.runs.append(dry)
                if dry.result is None:
                    report.problems.append(Problem(f'{where}dry run wrote no result JSON (exit {dry.rc})'))
            path = os.path.join(work, f'result-{i}.json')
            run = invoke(base + ['--result-json', path, *spec.get('extra_args', [])], work, env, timeout_s,
                         where + 'run' if where else 'first run', path)
            report.runs.append(run)
            report.problems += check_run(spec, run, strict=i > 0, where=where)
            if run.result is not None:
                report.problems += check_comparisons(spec, run.result, first_result, where)
                if dry is not None and dry.result is not None:
                    report.problems += check_predictions(dry.result, run.result, where)
            if i == 0:
                first_result = run.result
            if spec.get('state', 'SUCCEEDED') is not None and run.result is None:
                break                      # nothing to rerun against
    finally:
        if keep:
            print(f'{name}: kept {work}', file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report


def case_dirs(root: str = CASES_DIR) -> list[str]:
    return sorted(os.path.join(root, d) for d in os.listdir(root)
                  if os.path.isfile(os.path.join(root, d, 'expected.json')))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description='Run conformance cases with the real CLI.')
    ap.add_argument('cases', nargs='*', help='case folders (default: all under tests/conformance/cases)')
    ap.add_argument('--keep', action='store_true', help='keep each case\'s temporary folder')
    args = ap.parse_args(argv)
    failed = 0
    for d in args.cases or case_dirs():
        report = run_case(d, keep=args.keep)
        known = load_case(d)[0].get('xfail')
        if report.passed and known:
            failed += 1
            print(f'XPASS {report.name}: passes although marked xfail ({known}): remove the mark')
        elif report.passed:
            print(f'PASS {report.name}')
        elif report.only_predictions_unavailable:
            print(f'XFAIL {report.name}: {PREDICTIONS_UNAVAILABLE}')
        elif known:
            print(f'XFAIL {report.name}: {known}\n  - ' + '\n  - '.join(map(str, report.problems)))
        else:
            failed += 1
            print(f'FAIL {report.explain()}')
    print(f'{len(args.cases or case_dirs()) - failed} passed or expected to fail, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
