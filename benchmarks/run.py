#!/usr/bin/env python3
"""localrunner vs kfp.local (kfp==2.17.3): one command, both systems, same invocation.

    python3 benchmarks/run.py            # full run (< 20 min on 2 cores), writes RESULTS.md
    python3 benchmarks/run.py --quick    # a subset (< 3 min), writes .work/RESULTS-quick.md
    python3 benchmarks/run.py --report-only results.json   # re-render a report from raw figures

Stdlib only. It makes two venvs under benchmarks/.work/ (git-ignored) with uv:
  kfp-venv: kfp==2.17.3 + docker (kfp.local runs here, never in the caller's environment);
  lr-venv:  this checkout of localrunner (editable; byte-compiled at every benchmark start).
Runs alternate between the systems (A, B, A, B ...). Each process is timed from spawn to
exit with os.wait4 (wall clock + rusage; peak RSS = the largest single process of the tree,
as /usr/bin/time reports it). In-process figures come from the drivers (lr_driver.py,
kfp_driver.py), which time each pipeline call with perf_counter.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import http.server
import json
import os
import platform
import shutil
import signal
import socketserver
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, '.work')
KFP_VENV = os.path.join(WORK, 'kfp-venv')
KFP_ML_VENV = os.path.join(WORK, 'kfp-ml-venv')      # kfp.local use_venv=False installs pandas here
LR_VENV = os.path.join(WORK, 'lr-venv')
KFP_PY = os.path.join(KFP_VENV, 'bin', 'python')
LR_PY = os.path.join(LR_VENV, 'bin', 'python')
LR_CLI = os.path.join(LR_VENV, 'bin', 'localrunner')
IR = os.path.join(WORK, 'ir')
ENVS = os.path.join(WORK, 'envs')                     # localrunner's environment cache for the runs
IMAGE = 'localrunner-test-base:bookworm'
KFP_VERSION = '2.17.3'
ML_TASKS = 4


def log(msg: str) -> None:
    print(f'[bench {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ---------------------------------------------------------------------------- processes

def timed(argv: list[str], *, env: dict | None = None, cwd: str = REPO, timeout: float = 900,
          log_name: str | None = None) -> dict:
    """Spawn, wait4, return wall seconds, exit code and peak RSS (KiB) of the process tree."""
    logs = os.path.join(WORK, 'logs')
    os.makedirs(logs, exist_ok=True)
    path = os.path.join(logs, (log_name or os.path.basename(argv[0])) + '.log')
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(path, 'ab') as out:
        out.write(f'\n$ {" ".join(argv)}\n'.encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, lambda: _kill(proc.pid))
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    if rc != 0:
        log(f'  ! exit {rc}: {" ".join(argv)[:160]} (log {path})')
    return {'wall': wall, 'rc': rc, 'maxrss_kib': ru.ru_maxrss, 'user': ru.ru_utime, 'sys': ru.ru_stime}


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check(argv: list[str], **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------- setup

def _pip_sources() -> list[str]:
    """The host's pip extra indexes and find-links (local mirrors), passed on to uv."""
    urls, links = [], []
    try:
        out = check([sys.executable, '-m', 'pip', 'config', 'list'], timeout=30)
    except Exception:
        out = ''
    for line in out.splitlines():
        if '=' not in line:
            continue
        k, v = line.split('=', 1)
        vals = v.strip().strip('\'"').split()
        if k.endswith('extra-index-url'):
            urls += vals
        elif k.endswith('find-links'):
            links += vals
    urls += os.environ.get('PIP_EXTRA_INDEX_URL', '').split()
    links += os.environ.get('PIP_FIND_LINKS', '').split()
    args = []
    for u in dict.fromkeys(urls):
        if not u.startswith('file://') or os.path.exists(u[7:]):
            args += ['--extra-index-url', u]
    for l in dict.fromkeys(links):
        if os.path.exists(l.replace('file://', '')):
            args += ['--find-links', l]
    return args + ['--index-strategy', 'unsafe-best-match']


def make_venv(path: str, packages: list[str], marker_text: str) -> None:
    marker = os.path.join(path, '.bench-complete')
    if os.path.exists(marker) and open(marker).read() == marker_text:
        return
    uv = shutil.which('uv')
    if not uv:
        sys.exit('benchmarks need uv (pip install uv)')
    shutil.rmtree(path, ignore_errors=True)
    python = os.path.realpath(sys.executable)
    check([uv, 'venv', '--seed', '-q', '--python', python, path])
    # --compile-bytecode: what pip does by default; without it (and with PYTHONDONTWRITEBYTECODE
    # set, as on this machine) every process start would re-compile kfp/protobuf/rich sources
    check([uv, 'pip', 'install', '-q', '--compile-bytecode', '--python', os.path.join(path, 'bin', 'python')]
          + _pip_sources() + packages)
    with open(marker, 'w') as f:
        f.write(marker_text)


def setup(quick: bool) -> dict:
    os.makedirs(WORK, exist_ok=True)
    t = time.perf_counter()
    make_venv(KFP_VENV, [f'kfp=={KFP_VERSION}', 'docker'], f'kfp=={KFP_VERSION} docker bytecode')
    # googleapis-common-protos: kfp-pipeline-spec imports google.rpc but does not declare it
    make_venv(LR_VENV, ['-e', REPO, 'googleapis-common-protos'], f'-e {REPO} bytecode')
    # The editable checkout is byte-compiled as a (non-editable) pip install would be: with
    # PYTHONDONTWRITEBYTECODE set (this machine, CI) every localrunner process would otherwise
    # compile all of localrunner's source (~80 ms). Every run: the checkout may have changed.
    check([LR_PY, '-m', 'compileall', '-q', os.path.join(REPO, 'localrunner'), os.path.join(REPO, 'cache')])
    log(f'venvs ready ({time.perf_counter() - t:.1f}s)')
    docker_ok = False
    try:
        check(['docker', 'info'], timeout=30)
        out = check([sys.executable, '-c', 'from tests.support.docker_image import ensure_base_image as e; print(e())'],
                    cwd=REPO, timeout=900)
        docker_ok = bool(out.strip())
    except Exception as e:
        log(f'docker rows skipped: {e}')
    fans = '20,50' if quick else '200,1000'
    out = check([KFP_PY, os.path.join(HERE, 'pipelines.py'), IR] + ([IMAGE] if docker_ok else []),
                env={**os.environ, 'BENCH_FANOUT': fans, 'BENCH_CHAIN': '10'})
    paths = json.loads(out.strip().splitlines()[-1])
    return {'docker': docker_ok, 'ir': paths}


class CsvServer:
    """Serves examples/data/ on 127.0.0.1 so containers (host network) read the same CSV:
    neither system's Docker runner mounts a host path passed as a string parameter."""

    def __enter__(self):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        handler = functools.partial(Quiet, directory=os.path.join(REPO, 'examples', 'data'))
        self.httpd = socketserver.ThreadingTCPServer(('127.0.0.1', 0), handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/iris.csv'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------- figures

class Figures:
    """Raw samples by row id: {'lr': [...], 'kfp': [...], 'floor': [...], ...}."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def add(self, row: str, series: str, value: float | None, **extra) -> None:
        if value is None:
            return
        r = self.rows.setdefault(row, {})
        r.setdefault(series, []).append(value)
        for k, v in extra.items():
            r.setdefault(f'{series}.{k}', []).append(v)


def lr_cli(fig: Figures, row: str, ir: str, root: str, *, backend: str = 'subprocess', cache: bool = False,
           params: dict | None = None, env: dict | None = None, tasks: int | None = None,
           series: str = 'lr', timeout: float = 900, extra: tuple = ()) -> dict | None:
    """`localrunner run` as a user types it; whole-process wall + in-run figures from the result JSON."""
    rj = os.path.join(WORK, 'result.json')
    if os.path.exists(rj):
        os.remove(rj)
    argv = [LR_CLI, 'run', ir, '--root', root, '-q', '--result-json', rj, *extra]
    if backend != 'subprocess':
        argv += ['--backend', backend]
    if not cache:
        argv.append('--no-cache')
    for k, v in (params or {}).items():
        argv += ['-p', f'{k}={v}']
    t = timed(argv, env={'LOCALRUNNER_ENV_DIR': ENVS, **(env or {})}, log_name=f'lr-{row}', timeout=timeout)
    res = read_json(rj)
    if t['rc'] != 0 or not res or res.get('state') != 'SUCCEEDED':
        fig.add(row, series + '.failed', 1)
        return None
    leaf = [x for x in res['tasks'] if x.get('type') not in ('dag', 'loop') and x['state'] != 'SKIPPED']
    cached = sum(1 for x in leaf if x['state'] == 'CACHED')
    fig.add(row, series, t['wall'], run_s=res['duration_s'], rss=t['maxrss_kib'] / 1024, hits=cached,
            tasks=len(leaf))
    return {'t': t, 'res': res, 'leaf': leaf}


def lr_driver(fig: Figures, row_first: str, row_rep: str, ir: str, root: str, repeat: int, *,
              backend: str = 'subprocess', params: dict | None = None) -> None:
    out = os.path.join(WORK, 'lr-driver.json')
    argv = [LR_PY, os.path.join(HERE, 'lr_driver.py'), '--ir', ir, '--root', root, '--out', out,
            '--repeat', str(repeat), '--backend', backend, '--no-cache']
    for k, v in (params or {}).items():
        argv += ['-p', f'{k}={v}']
    t = timed(argv, env={'LOCALRUNNER_ENV_DIR': ENVS}, log_name=f'lrd-{row_first}')
    res = read_json(out)
    if t['rc'] != 0 or not res:
        fig.add(row_first, 'lr.failed', 1)
        return
    runs = res['runs']
    fig.add(row_first, 'lr', runs[0]['s'])
    for r in runs[1:]:
        fig.add(row_rep, 'lr', r['s'])
    os.remove(out)


def kfp_run(fig: Figures, row: str | None, ir: str, root: str, runner: str, *, repeat: int = 1,
            cache: bool = False, params: dict | None = None, python: str = KFP_PY, series: str = 'kfp',
            row_first: str | None = None, row_rep: str | None = None, timeout: float = 900) -> dict | None:
    out = os.path.join(WORK, 'kfp-driver.json')
    if os.path.exists(out):
        os.remove(out)
    argv = [python, os.path.join(HERE, 'kfp_driver.py'), '--ir', ir, '--runner', runner, '--root', root,
            '--out', out, '--repeat', str(repeat)]
    if cache:
        argv.append('--cache')
    for k, v in (params or {}).items():
        argv += ['-p', f'{k}={v}']
    t = timed(argv, log_name=f'kfp-{row or row_first}', timeout=timeout)
    res = read_json(out)
    if t['rc'] != 0 or not res:
        fig.add(row or row_first, series + '.failed', 1)
        return None
    runs = res['runs']
    if row:
        fig.add(row, series, t['wall'], run_s=runs[0]['s'], rss=t['maxrss_kib'] / 1024,
                hits=runs[0]['cache_hits'], import_s=res['import_s'])
    if row_first:
        fig.add(row_first, series, runs[0]['s'])
    if row_rep:
        for r in runs[1:]:
            fig.add(row_rep, series, r['s'], hits=r['cache_hits'])
    return {'t': t, 'res': res}


def floor_exec_argv(ir_path: str, tmp: str) -> tuple[list[str], dict]:
    """The trivial task's own program (what KFP runs after its pip prologue), run directly in
    the environment localrunner built for it: interpreter start + KFP's executor."""
    code = (
        'import json,sys,yaml\n'
        'from localrunner.environments.python_env import lift_prologue\n'
        'from localrunner.environments.venvs import VenvCache\n'
        'd=yaml.safe_load(open(sys.argv[1]))\n'
        'c=next(iter(d["deploymentSpec"]["executors"].values()))["container"]\n'
        'env,argv=lift_prologue(c["command"],c["args"])\n'
        'print(json.dumps({"venv":VenvCache().path(env),"argv":argv}))\n')
    info = json.loads(check([LR_PY, '-c', code, ir_path], env={**os.environ, 'LOCALRUNNER_ENV_DIR': ENVS}))
    os.makedirs(tmp, exist_ok=True)
    executor_input = {'inputs': {'parameterValues': {'x': 1}},
                      'outputs': {'parameters': {'Output': {'outputFile': os.path.join(tmp, 'Output')}},
                                  'outputFile': os.path.join(tmp, 'executor_output.json')}}
    argv = [a.replace('{{$}}', json.dumps(executor_input)) for a in info['argv']]
    env = {'PATH': os.path.join(info['venv'], 'bin') + os.pathsep + os.environ['PATH'],
           'VIRTUAL_ENV': info['venv'], 'TMPDIR': tmp}
    return argv, env


def docker_env_image(ir_path: str) -> str | None:
    code = (
        'import sys,yaml,docker\n'
        'from localrunner.environments.python_env import lift_prologue\n'
        'from localrunner.environments import images\n'
        'd=yaml.safe_load(open(sys.argv[1]))\n'
        'c=next(iter(d["deploymentSpec"]["executors"].values()))["container"]\n'
        'env,argv=lift_prologue(c["command"],c["args"])\n'
        'base=docker.from_env().images.get(c["image"]).id\n'
        'print(images.env_image_tag(images.env_image_key(base, env)))\n')
    try:
        return check([LR_PY, '-c', code, ir_path]).strip()
    except subprocess.CalledProcessError:
        return None


# ---------------------------------------------------------------------------- scenarios

def s1_per_task(fig: Figures, ctx: dict, quick: bool) -> None:
    log('S1 per-task overhead')
    ir = ctx['ir']
    whole_reps, inproc_reps, repeat = (2, 1, 3) if quick else (4, 3, 4)
    root = fresh(os.path.join(WORK, 'roots', 's1'))
    # warm-up (not measured): builds localrunner's environment / derived image once
    lr_cli(Figures(), 'warmup', ir['one-sub'], root)
    if ctx['docker']:
        lr_cli(Figures(), 'warmup', ir['one-docker'], root, backend='docker')
    kfp_run(Figures(), 'warmup', ir['one-sub'], os.path.join(root, 'kfp'), 'sub')
    for i in range(whole_reps):
        lr_cli(fig, 's1.sub.whole', ir['one-sub'], root)
        kfp_run(fig, 's1.sub.whole', ir['one-sub'], os.path.join(root, 'kfp'), 'sub')
        if ctx['docker']:
            lr_cli(fig, 's1.docker.whole', ir['one-docker'], root, backend='docker')
            kfp_run(fig, 's1.docker.whole', ir['one-docker'], os.path.join(root, 'kfpd'), 'docker')
    for i in range(inproc_reps):
        lr_driver(fig, 's1.sub.first', 's1.sub.repeat', ir['one-sub'], root, repeat)
        kfp_run(fig, None, ir['one-sub'], os.path.join(root, 'kfp'), 'sub', repeat=repeat,
                row_first='s1.sub.first', row_rep='s1.sub.repeat')
        if ctx['docker']:
            lr_driver(fig, 's1.docker.first', 's1.docker.repeat', ir['one-docker'], root, repeat, backend='docker')
            kfp_run(fig, None, ir['one-docker'], os.path.join(root, 'kfpd'), 'docker', repeat=repeat,
                    row_first='s1.docker.first', row_rep='s1.docker.repeat')
    if not quick:
        # kfp.local's recommended runner: a fresh venv per task (~25 s each); 1 process, 2 tasks
        lr_driver(fig, 's1.venv.first', 's1.venv.repeat', ir['one-sub'], root, 2)
        kfp_run(fig, None, ir['one-sub'], os.path.join(root, 'kfpv'), 'venv', repeat=2,
                row_first='s1.venv.first', row_rep='s1.venv.repeat', series='kfp')
    # floors
    argv, env = floor_exec_argv(ir['one-sub'], os.path.join(WORK, 'floor'))
    for i in range(10 if not quick else 5):
        t = timed(argv, env=env, log_name='floor-exec')
        if t['rc'] == 0:
            for row in ('s1.sub.repeat', 's1.sub.first'):
                fig.add(row, 'floor', t['wall'])
    bare_py = timed([LR_PY, '-c', 'pass'], log_name='floor-py')
    fig.add('s1.sub.whole', 'floor_py', bare_py['wall'])
    for i in range(3):
        t = timed(argv, env=env, log_name='floor-exec')
        fig.add('s1.sub.whole', 'floor', t['wall'])
        t = timed([LR_PY, '-c', 'import localrunner.faces.run_command, localrunner.backends.subprocess_backend'],
                  log_name='import-lr')
        fig.add('s1.sub.whole', 'lr_import', t['wall'])
        t = timed([KFP_PY, '-c', 'from kfp import local'], log_name='import-kfp')
        fig.add('s1.sub.whole', 'kfp_import', t['wall'])
    if ctx['docker']:
        env_image = docker_env_image(ir['one-docker'])
        tmp = os.path.join(WORK, 'floor-docker')
        dargv, _ = floor_exec_argv(ir['one-docker'], tmp)
        for i in range(10 if not quick else 5):
            t = timed(['docker', 'run', '--rm', '--network', 'none', IMAGE, 'true'], log_name='floor-docker')
            if t['rc'] == 0:
                for row in ('s1.docker.repeat', 's1.docker.first', 's1.docker.whole'):
                    fig.add(row, 'floor_bare', t['wall'])
            if env_image:
                t = timed(['docker', 'run', '--rm', '--network', 'host', '-v', f'{tmp}:{tmp}', '-e', f'TMPDIR={tmp}',
                           env_image] + dargv, log_name='floor-docker-exec')
                if t['rc'] == 0:
                    for row in ('s1.docker.repeat', 's1.docker.first', 's1.docker.whole'):
                        fig.add(row, 'floor', t['wall'])


def s2_throughput(fig: Figures, ctx: dict, quick: bool) -> None:
    log('S2 DAG throughput')
    ir = ctx['ir']
    root = fresh(os.path.join(WORK, 'roots', 's2'))
    for i in range(1 if quick else 3):
        lr_cli(fig, 's2.chain10', ir['chain10-sub'], root)
        kfp_run(fig, 's2.chain10', ir['chain10-sub'], os.path.join(root, 'kfp'), 'sub')
    fan = 20 if quick else 200
    for i in range(1 if quick else 2):
        lr_cli(fig, f's2.fanout{fan}', ir[f'fanout{fan}-sub'], root)
        if i == 0 and not quick:
            kfp_run(fig, f's2.fanout{fan}', ir[f'fanout{fan}-sub'], os.path.join(root, 'kfp'), 'sub')
    big = 50 if quick else 1000
    lr_cli(fig, f's2.fanout{big}', ir[f'fanout{big}-sub'], root)
    shutil.rmtree(root, ignore_errors=True)


def s3_scheduler(fig: Figures, ctx: dict, quick: bool) -> None:
    log('S3 scheduler cost (no-op backend)')
    for n in ([1000] if quick else [1000, 10000]):
        out = os.path.join(WORK, 'sched.json')
        t = timed([LR_PY, os.path.join(HERE, 'sched_bench.py'), '--tasks', str(n), '--root',
                   os.path.join(WORK, 'roots', 's3'), '--out', out], log_name='sched', timeout=900)
        res = read_json(out)
        if t['rc'] == 0 and res:
            fig.add(f's3.sched{n}', 'lr', res['schedule_s'] / n * 1e6, validate_us=res['validate_s'] / n * 1e6,
                    plan_us=res['plan_s'] / n * 1e6, wall=t['wall'], rss=t['maxrss_kib'] / 1024)
            if res.get('folders_floor_s'):      # the same tasks' folders, made by a bare loop
                fig.add(f's3.sched{n}', 'floor', res['folders_floor_s'] / n * 1e6)
    shutil.rmtree(os.path.join(WORK, 'roots', 's3'), ignore_errors=True)


def _cold_base_image() -> str | None:
    """A base image with a new id (same content + a label), so localrunner has no derived
    environment image for it yet: a real cold start without deleting anyone's images."""
    tag = f'localrunner-bench-cold:{uuid.uuid4().hex[:10]}'
    try:
        cid = check(['docker', 'create', IMAGE, 'true']).strip()
        check(['docker', 'commit', '--change', f'LABEL bench.nonce={tag}', cid, tag])
        check(['docker', 'rm', cid])
        return tag
    except subprocess.CalledProcessError as e:
        log(f'cannot make a cold base image: {e.stderr}')
        return None


def _remove_cold_image(tag: str) -> None:
    try:
        base_id = check(['docker', 'image', 'inspect', '--format', '{{.Id}}', tag]).strip()
        derived = check(['docker', 'images', '-q', '--filter', f'label=localrunner.env.base={base_id}']).split()
        derived += check(['docker', 'images', '-q', '--filter', f'label=bench.nonce={tag}']).split()
        for image in dict.fromkeys(derived):
            subprocess.run(['docker', 'rmi', '-f', image], capture_output=True)
        subprocess.run(['docker', 'rmi', '-f', tag], capture_output=True)
    except subprocess.CalledProcessError:
        pass


def s45_example(fig: Figures, ctx: dict, quick: bool) -> None:
    """S4 (cache) and S5 (example pipeline cold / warm / cached), both systems, both backends."""
    log('S4/S5 example pipeline (pandas + scikit-learn)')
    ir = ctx['ir']
    data = {'data_path': 'examples/data/iris.csv'}
    roots = fresh(os.path.join(WORK, 'roots', 's45'))
    kfp_ml_py = os.path.join(KFP_ML_VENV, 'bin', 'python')
    if not quick:
        # cold: no environment yet, on both systems
        cold_envs = fresh(os.path.join(WORK, 'envs-cold'))
        lr_cli(fig, 's5.sub.cold', ir['ml-sub'], os.path.join(roots, 'lr-cold'), params=data,
               env={'LOCALRUNNER_ENV_DIR': cold_envs})
        shutil.rmtree(cold_envs, ignore_errors=True)
        make_venv(KFP_ML_VENV, [f'kfp=={KFP_VERSION}', 'docker'], 'fresh ' + uuid.uuid4().hex)  # no pandas yet
        kfp_run(fig, 's5.sub.cold', ir['ml-sub'], os.path.join(roots, 'kfp-cold'), 'sub', params=data,
                python=kfp_ml_py)
    elif not os.path.exists(kfp_ml_py):
        make_venv(KFP_ML_VENV, [f'kfp=={KFP_VERSION}', 'docker'], 'quick')
        kfp_run(Figures(), 'warmup', ir['ml-sub'], os.path.join(roots, 'kfp-warmup'), 'sub', params=data,
                python=kfp_ml_py)
    # warm environment, empty cache -> cached re-run on the same root (alternating systems)
    if not quick:
        lr_cli(Figures(), 'warmup', ir['ml-sub'], os.path.join(roots, 'lr-warmup'), params=data)
    for i in range(1 if quick else 3):
        r = os.path.join(roots, f'lr-{i}')
        lr_cli(fig, 's5.sub.warm', ir['ml-sub'], r, params=data, cache=True)
        kfp_r = os.path.join(roots, f'kfp-{i}')
        if i < (1 if quick else 2):
            # kfp.local, enable_caching=True, cache_root on disk: first run, then a re-run process
            kfp_run(fig, 's5.sub.warm', ir['ml-sub'], kfp_r, 'sub', params=data, python=kfp_ml_py, cache=True)
        got = lr_cli(fig, 's5.sub.cached', ir['ml-sub'], r, params=data, cache=True)
        if i < (1 if quick else 2):
            kfp_run(fig, 's5.sub.cached', ir['ml-sub'], kfp_r, 'sub', params=data, python=kfp_ml_py, cache=True)
        if got:
            for x in got['leaf']:
                if x['state'] == 'CACHED':
                    fig.add('s4.hit', 'lr', x['duration_s'])
    if quick or not ctx['docker']:
        return
    with CsvServer() as srv:
        url = {'data_path': srv.url}
        cold = _cold_base_image()
        if cold:
            path = os.path.join(IR, 'ml-docker-cold.yaml')
            with open(ir['ml-docker']) as f:
                text = f.read()
            with open(path, 'w') as f:
                f.write(text.replace(IMAGE, cold))
            try:
                lr_cli(fig, 's5.docker.cold', path, os.path.join(roots, 'lrd-cold'), backend='docker', params=url)
            finally:
                _remove_cold_image(cold)
        # kfp.local DockerRunner: every run installs everything from PyPI in fresh containers
        kfp_run(fig, 's5.docker.cold', ir['ml-docker'], os.path.join(roots, 'kfpd'), 'docker', params=url,
                cache=True)
        lr_cli(Figures(), 'warmup', ir['ml-docker'], os.path.join(roots, 'lrd-warmup'), backend='docker',
               params=url)
        for i in range(2):
            r = os.path.join(roots, f'lrd-{i}')
            lr_cli(fig, 's5.docker.warm', ir['ml-docker'], r, backend='docker', params=url, cache=True)
            lr_cli(fig, 's5.docker.cached', ir['ml-docker'], r, backend='docker', params=url, cache=True)
        # kfp.local's recommended SubprocessRunner(use_venv=True): a fresh venv per task, every run
        kfp_run(fig, 's5.venv.cold', ir['ml-sub'], os.path.join(roots, 'kfpv'), 'venv', params=data, cache=True)
    shutil.rmtree(roots, ignore_errors=True)


def s6_hashing(fig: Figures, ctx: dict, quick: bool) -> None:
    log('S6 hashing')
    out = os.path.join(WORK, 'hash.json')
    size = 256 if quick else 1024
    t = timed([LR_PY, os.path.join(HERE, 'hash_bench.py'), '--size-mib', str(size), '--dir',
               os.path.join(WORK, 'hash'), '--out', out, '--reps', '2' if quick else '3'], log_name='hash')
    res = read_json(out)
    if t['rc'] != 0 or not res:
        return
    gb = res['size_bytes'] / 1e9
    for x in res['digest_cold']:
        fig.add('s6.cold', 'lr', gb / x)
    for x in res['cat_cold']:
        fig.add('s6.cold', 'floor', gb / x)
    for x in res['digest_warm']:
        fig.add('s6.warm', 'lr', gb / x)
    for x in res['cat_warm']:
        fig.add('s6.warm', 'floor', gb / x)
    for x in res['memo_hit']:
        fig.add('s6.memo', 'lr', x * 1e6)
    fig.add('s6.memo', 'first', res['memo_first'])
    fig.rows['s6.meta'] = {'size_mib': [size]}
    shutil.rmtree(os.path.join(WORK, 'hash'), ignore_errors=True)


def s7_warm_start(fig: Figures, ctx: dict, quick: bool) -> None:
    """Warm start (lightweight tasks forked from a per-environment zygote) vs exec
    (--no-warm-start): per task through the backend alone, and a ParallelFor's first run."""
    log('S7 warm start')
    ir = ctx['ir']
    out = os.path.join(WORK, 'warm.json')
    t = timed([LR_PY, os.path.join(HERE, 'warm_bench.py'), '--ir', ir['one-sub'], '--out', out,
               '--tasks', '10' if quick else '20', '--blocks', '2' if quick else '3'],
              env={'LOCALRUNNER_ENV_DIR': ENVS}, log_name='warm-bench')
    res = read_json(out)
    if t['rc'] == 0 and res:
        for mode in ('warm', 'exec'):
            for x in res[f'{mode}_s']:
                fig.add(f's7.task.{mode}', 'lr', x)
            for x in res['python_pass_s']:
                fig.add(f's7.task.{mode}', 'floor', x)
            for x in res['bare_fork_s']:
                fig.add(f's7.task.{mode}', 'floor_fork', x)
        fig.add('s7.task.warm', 'first', res['first_warm_s'])
    # the same trivial component x N in one ParallelFor, first run (empty cache), both ways
    big = 50 if quick else 1000
    cores = os.cpu_count() or 2
    # the warm row is the round-2 target: three runs, each in a new root, for a median (one
    # run of this VM varies by a third); the exec row (~40 s a run) is measured once. The
    # roots are removed after the row, not between its runs: on this VM's ext4 (no journal)
    # every inode allocated in the next 60-360 s skips, one by one, the ~12,000 a removed
    # 1,000-task root freed, so each run measured the removal before it (in the last run
    # that removed between runs, the three runs fell 156 -> 134 -> 111 tasks/s, in order)
    runs = [('warm', ())] * (1 if quick else 3) + [('exec', ('--no-warm-start',))]
    shutil.rmtree(os.path.join(WORK, 'roots', 's7'), ignore_errors=True)
    for i, (mode, extra) in enumerate(runs):
        root = os.path.join(WORK, 'roots', 's7', f'{mode}-{i}')
        os.makedirs(root)
        got = lr_cli(Figures(), f's7.fan.{mode}', ir[f'fanout{big}-sub'], root,
                     cache=True, extra=extra, timeout=1800)
        if got:
            fig.add(f's7.fan.{mode}', 'lr', len(got['leaf']) / got['res']['duration_s'],
                    whole=len(got['leaf']) / got['t']['wall'], tasks=len(got['leaf']))
            if res:      # what the floors would allow on every core
                fig.add(f's7.fan.{mode}', 'floor', cores / med(res['python_pass_s']))
                fig.add(f's7.fan.{mode}', 'floor_fork', cores / med(res['bare_fork_s']))
    shutil.rmtree(os.path.join(WORK, 'roots', 's7'), ignore_errors=True)


def s8_round2(fig: Figures, ctx: dict, quick: bool) -> None:
    """The engine's own cost against the floor (issue: performance round 2), in one run:
    a fully cached ParallelFor re-run per task, a cached single-task run as a whole process
    against `python3 -c pass`, and the floors themselves."""
    log('S8 engine cost vs floors')
    ir = ctx['ir']
    big = 50 if quick else 1000
    root = fresh(os.path.join(WORK, 'roots', 's8'))
    reps = 3 if quick else 5
    # floors: a bare interpreter start, measured between the runs below (same load)
    for _ in range(reps):
        t = timed([LR_PY, '-c', 'pass'], log_name='python-pass')
        fig.add('s8.single_cached', 'floor', t['wall'])
    # a cached single-task run, whole process (the first run fills the cache)
    lr_cli(Figures(), 's8.warmup', ir['one-sub'], root, cache=True)
    for _ in range(reps):
        lr_cli(fig, 's8.single_cached', ir['one-sub'], root, cache=True)
    # a fully cached ParallelFor x1000: whole run / tasks
    if lr_cli(Figures(), 's8.fill', ir[f'fanout{big}-sub'], root, cache=True, timeout=1800):
        for _ in range(2 if quick else 3):
            got = lr_cli(Figures(), 's8.cached', ir[f'fanout{big}-sub'], root, cache=True, timeout=1800)
            if got:
                n = len(got['leaf'])
                fig.add('s8.cached_per_task', 'lr', got['t']['wall'] / n * 1000, run_ms=got['res']['duration_s'] / n * 1000,
                        tasks=n)
    shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------- report

def machine_facts() -> dict:
    def first(cmd):
        try:
            return check(cmd, timeout=30).strip()
        except Exception:
            return 'n/a'
    cpu = 'n/a'
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    mem = 'n/a'
    try:
        for line in open('/proc/meminfo'):
            if line.startswith('MemTotal'):
                mem = f'{int(line.split()[1]) / 2**20:.1f} GiB'
    except OSError:
        pass
    return {
        'cpus': os.cpu_count(), 'cpu': cpu, 'memory': mem, 'kernel': platform.release(),
        'os': first(['sh', '-c', '. /etc/os-release && echo $PRETTY_NAME']),
        'python': platform.python_version(),
        'docker': first(['docker', 'version', '--format', '{{.Server.Version}} (server) / {{.Client.Version}} (client)']),
        'uv': first(['uv', '--version']),
        'kfp': first([KFP_PY, '-c', 'import kfp; print(kfp.__version__)']),
        'localrunner': first(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']) + (
            ' (dirty tree)' if first(['git', '-C', REPO, 'status', '--porcelain', '--', 'localrunner', 'cache']) else ''),
        'localrunner_commit_date': first(['git', '-C', REPO, 'log', '-1', '--format=%cI']),
        'PYTHONDONTWRITEBYTECODE': os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)'),
    }


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(xs, unit='s', digits=None) -> str:
    if not xs:
        return '–'
    m = med(xs)
    d = digits if digits is not None else (3 if m < 1 else 2 if m < 10 else 1)
    s = f'{m:.{d}f}'
    if len(xs) > 1:
        s += f' ({min(xs):.{d}f}–{max(xs):.{d}f}, n={len(xs)})'
    else:
        s += ' (n=1)'
    return s + (f' {unit}' if unit else '')


# Each row: (id, scenario text, unit, lower_is_better, note). Ratio = kfp/lr when lower is better.
ROWS = [
    ('s1.sub.whole', '1 one trivial task, whole process (`localrunner run` vs script), subprocess', 's', True),
    ('s1.sub.first', '1 first task in a process (in-process), subprocess', 's', True),
    ('s1.sub.repeat', '1 repeated task, same process (in-process), subprocess', 's', True),
    ('s1.venv.first', '1 first task (in-process); kfp.local SubprocessRunner(use_venv=True)', 's', True),
    ('s1.venv.repeat', '1 repeated task (in-process); kfp.local SubprocessRunner(use_venv=True)', 's', True),
    ('s1.docker.whole', '1 one trivial task, whole process, docker', 's', True),
    ('s1.docker.first', '1 first task in a process (in-process), docker', 's', True),
    ('s1.docker.repeat', '1 repeated task, same process (in-process), docker', 's', True),
    ('s2.chain10', '2 chain of 10 tasks, whole process (subprocess)', 's', True),
    ('s2.fanout20', '2 ParallelFor x20, whole process (subprocess)', 's', True),
    ('s2.fanout50', '2 ParallelFor x50, whole process (subprocess, localrunner only)', 's', True),
    ('s2.fanout200', '2 ParallelFor x200, whole process (subprocess)', 's', True),
    ('s2.fanout1000', '2 ParallelFor x1000, whole process (subprocess, localrunner only)', 's', True),
    ('s3.sched1000', '3 scheduler alone, 1,000-task DAG, no-op backend', 'µs/task', True),
    ('s3.sched10000', '3 scheduler alone, 10,000-task DAG, no-op backend', 'µs/task', True),
    ('s4.hit', '4 one cache hit (per task, in-run), example pipeline', 's', True),
    ('s5.sub.cold', '5 example pipeline, cold (no environment yet), subprocess', 's', True),
    ('s5.sub.warm', '5 example pipeline, warm environment, first run (empty cache), subprocess', 's', True),
    ('s5.sub.cached', '5 example pipeline, cached re-run, subprocess', 's', True),
    ('s5.venv.cold', '5 example pipeline; kfp.local SubprocessRunner(use_venv=True) (cold = every run)', 's', True),
    ('s5.docker.cold', '5 example pipeline, cold (no environment/derived image yet), docker', 's', True),
    ('s5.docker.warm', '5 example pipeline, warm environment, first run, docker', 's', True),
    ('s5.docker.cached', '5 example pipeline, cached re-run, docker', 's', True),
    ('s6.cold', '6 hashing 1 file, cold page cache (digest vs `cat > /dev/null`)', 'GB/s', False),
    ('s6.warm', '6 hashing 1 file, warm page cache (digest vs `cat > /dev/null`)', 'GB/s', False),
    ('s6.memo', '6 memoized digest (StatMemo hit) of the same file', 'µs', True),
    ('s7.task.warm', '7 one trivial task through the backend, warm start (forked from the zygote)', 's', True),
    ('s7.task.exec', '7 one trivial task through the backend, exec (`--no-warm-start`)', 's', True),
    ('s7.fan.warm', '7 ParallelFor x1000 (x50 quick) of the trivial task, first run, warm start (in-run)',
     'tasks/s', False),
    ('s7.fan.exec', '7 ParallelFor x1000 (x50 quick) of the trivial task, first run, `--no-warm-start` (in-run)',
     'tasks/s', False),
    ('s8.single_cached', '8 a cached single-task run, whole process; floor `python3 -c pass`', 's', True),
    ('s8.cached_per_task', '8 ParallelFor x1000 (x50 quick), fully cached re-run, whole process / tasks',
     'ms/task', True),
]

# Rows compared with another row's figure: (series, source row).
BORROWED = {
    's5.venv.cold': ('lr', 's5.sub.cold'),          # use_venv=True vs localrunner's subprocess backend, cold
    's5.docker.warm': ('kfp', 's5.docker.cold'),    # DockerRunner: fresh containers + PyPI every run
    's5.docker.cached': ('kfp', 's5.docker.cold'),  # ... and 0/4 cache hits (Metrics outputs)
}

# Why a figure is behind kfp.local or > 1.5x its floor, and what would fix it. Filled from the
# analysis of the committed run; a flagged row with no entry says so in the closing note.
CAUSES: dict[str, str] = {
    's1.sub.whole': (
        'Cause: start-up of the `localrunner` CLI, not the task (the in-run figure is at the exec floor): '
        'about 0.1 s of imports before the first task (asyncio, diskcache/sqlite3, the engine). '
        'Round 2 took out ~0.13 s: KFP\'s protobuf schema check is remembered by the IR text\'s digest, '
        'and so is what PyYAML parsed it into (spec/schema_memo.py: an unchanged file imports neither '
        'protobuf nor PyYAML), rich is imported only at a first printed line (never with -q), built-in '
        'backends skip the entry-point scan, events and IR views are records (no per-class exec at '
        'import). What is left is what any run needs; going lower needs a resident process. The task '
        'itself no longer waits for its zygote: the CLI starts, before it imports the engine, the zygotes '
        'the last run of the same pipeline used (backends/warm_prestart.py), and since this stop it does so ~50 ms into the process, before anything but the standard library is imported (backends/zygotes.py, '
        'task_environ.py, user_cache.py; before, importing warm.py pulled in the backend, its venvs and the '
        'spec package, and the zygote started ~115 ms in): the first task of a chain waits ~20 ms instead of '
        '~73. In-run 0.037 s in this run (0.084 s in a slow hour). The imports took '
        '0.104-0.109 s in this run (0.113-0.122 s in the last run of the previous stop, 0.19-0.26 s in a slow hour): ~25 ms of it asyncio\'s ssl and '
        'OpenSSL\'s hashlib start, ~15 ms dataclasses\' inspect, ~25 ms diskcache in a slow hour.'),
    's1.docker.whole': (
        'Cause: the same CLI start-up as the subprocess row, plus the Docker SDK client (`docker.from_env()` + '
        'ping + image inspect) before the first container.'),
    's1.docker.first': (
        'Cause: first Docker task in a process pays the SDK client set-up, `images.get` of the base image and '
        'the derived-image lookup; later tasks reuse them (compare the repeated row, at the floor).'),
    's1.docker.repeat': (
        'Cause: each attempt is create → start → attach/stream logs → wait → remove through the Docker API '
        '(≥5 round trips) plus `init=True` (tini) and bind mounts; `docker run --rm` does the same work in '
        'one CLI call. Fix: remove the container asynchronously after wait(), off the critical path.'),
    's5.sub.warm': (
        'Cause: venvs built without bytecode re-compile pandas + scikit-learn on every import when '
        '`PYTHONDONTWRITEBYTECODE=1`; fixed (uv `--compile-bytecode`), this row is now ahead.'),
    's1.sub.repeat': (
        'Cause: the task here is exec\'d (the driver runs with warm start off): `sh`, an interpreter and '
        'KFP\'s imports, ~60 ms; the engine\'s own share is ~2-3 ms of CPU per task: two thread hops (the '
        'cache lookup, shared by the tasks of one loop turn, and the whole attempt: folders, launch, wait, '
        'reading + storing + recording the outputs).'),
    's8.single_cached': (
        'Cause: start-up, not work (in-run the cached task takes ~7 ms in a quiet hour, 17 ms in this '
        'one): the interpreter and importing the CLI and the engine (~0.1 s: asyncio ~17 ms with ssl and '
        'logging, diskcache + sqlite3 ~10 ms, the engine and the backend contract; ~250 modules, none over '
        '5 ms). PyYAML (~15-25 ms) is no longer imported for an unchanged file: what it parsed is '
        'remembered (spec/schema_memo.py ParseMemo), ~14 ms less a run (median of 15, alternated with the '
        'code before). <= 1.3x `python3 -c pass` (~25-35 ms) is '
        'below what an interpreter importing asyncio and SQLite can reach; it needs a resident server '
        'the CLI hands the run to, a process left running between commands, which round 2\'s lifecycle '
        'rule (no process outlives the command) rules out. Not built. In this run the imports alone took '
        '0.104-0.109 s (row 1\'s floor cell): 5.65x the floor (5.45x in the last run of the previous '
        'stop).'),
    's3.sched1000': 'Cause: as for 10,000 tasks.',
    's3.sched10000': (
        'Cause: the floor is the file system alone: the same tasks\' folders (task/, out/, logs/ and the '
        'executor input file) made by a bare loop on the same root, ~4 metadata operations per task at '
        '35-200 µs each on this VM\'s disk, varying 4x between runs. Beyond it, per task: one thread hop '
        '(folders, launch, wait and reading the outputs in one worker call), ~680 Python calls on the '
        'event loop (inputs, the executor input, key parts and their digest, the slot, three events, the '
        'record) and the GIL hand-offs between the loop and the worker (futex ~17% of the CPU in perf). '
        'Flame graph: benchmarks/profiles/scheduler-10k.svg (py-spy; the worker\'s mkdirs are the widest '
        'frame). <= 0.2 ms/task is at or under the folders\' own cost on this disk; it needs no folder '
        'until a task writes one, a change to what a task finds at its start. Not built.'),
    's1.sub.first': (
        'Cause: the first run in a process creates the run folder, opens the cache (CAS, diskcache action '
        'index, sqlite StatMemo), starts the asyncio loop and a thread pool. Fix: open the stores lazily.'),
    's2.fanout200': (
        'Cause: engine work per task on the same 2 cores the tasks use (thread-pool hops, executor '
        'input/output files, CAS puts).'),
    's2.fanout1000': 'Cause: as for x200.',
    's7.task.warm': (
        'Cause: what a forked task still does that `python3 -c pass` does not: a fork of a ~15 MB '
        'interpreter by an idle reaper (its copy-on-write page faults: ~500 a task) and KFP\'s executor '
        'itself (argparse and gettext, logging the executor input as indented JSON, compiling the '
        'component, writing its outputs). The interpreter start and KFP\'s imports are gone, and so, this '
        'round, are the regular expressions argparse compiled in every task (the zygote compiles them once: '
        'a trivial task\'s Python time 1.65 -> 1.44 s per 200 tasks, cProfile summed over the tasks).'),
    's7.task.exec': (
        'Cause: this is the exec path, measured for comparison: `sh`, an interpreter start and KFP\'s imports '
        '(~60-70 ms of CPU) per task; warm start removes them.'),
    's7.fan.warm': (
        'Cause: CPU, and on this VM the file system. A trivial task costs ~13-15 ms of CPU on the whole '
        'machine (/proc/stat over an x1000 run: ~5 user, ~8 kernel), the runner ~2.7 ms of it. In perf '
        '(system-wide, x1000): page faults in the forked processes 24% of all CPU (a task ~500 minor faults: '
        'copy-on-write and the interpreter\'s pages mapped again after the fork), their exits 7%, forks 4%; '
        'the runner\'s mkdir and open 11%: this root\'s ext4 has no journal (no /proc/fs/jbd2 entry), and '
        'without one ext4 skips, one by one, every inode freed in the last 60 s (360 s while its table '
        'block is dirty) when it allocates one (recently_deleted(): ~9% of all CPU here). Each row of this '
        'benchmark deletes the previous row\'s root (~9,000 inodes for x1000), so the next rows pay for it: '
        'the same code took 182 tasks/s without the cache (row 2) and 132-140 with it (row 7) in the last run of '
        'the previous stop, 222 and 160-195 in this one (row 7\'s three runs no longer remove a root between '
        'them: when they did, they fell 156 -> 134 -> 111 in order). A task makes 9 inodes in the runner (5 folders, the executor input, the log, the '
        'cache\'s lock file; its TMPDIR) and 3 in the task (KFP\'s mktemp -d and the component file, its '
        'output file). With the cache on, the runner spends ~0.4 ms more user and ~0.7-1 ms more kernel CPU a '
        'task (the key\'s lock file, one new inode a task, and the action entry; py-spy --gil: ~0.3 ms a '
        'task of Python: the lookups, the entry, the records), in process on this disk alternated 124-139 '
        'tasks/s without the cache against 117-133 with it; /proc/stat also shows ~2 ms of idle CPU a task: with '
        'two slots on two cores, both tasks are at times in a wait (a fork, an exit, a hand-off).'),
    's7.fan.exec': 'Cause: ~80-90 ms of CPU per exec\'d task on 2 cores, plus the engine as in the warm row.',
    's6.cold': (
        'Cause: the disk, not the digest. The three samples were 1.69, 0.67 and 0.86 GB/s against `cat` '
        'at 1.68-1.90 in the same run: the first ran at the floor (xxh3 hashes faster than the disk '
        'reads, see the warm row), the next two met this VM\'s disk slowing down (this run was slow '
        'throughout, see the notes); the previous full runs measured 1.0-1.1x.'),
    's6.warm': (
        'Cause: xxh3-128 is compute-bound at ~7.5 GB/s on one core of this CPU while `cat` only copies '
        'pages (~12 GB/s); with a cold page cache (the usual case for a new artifact) the digest runs at '
        'disk speed (1.1x). Re-reads never happen for an unchanged file (the stat memo: ~30 µs). A faster '
        'path would hash large files in parallel chunks, which changes the digest format.'),
}

# Findings that are not a table cell (no kfp.local counterpart or no floor), from the same run.
NOTES: list[str] = [
    '**Scheduler alone (row 3)** is linear: 0.58-0.64 ms/task in this run (0.69-0.81 in the last run of the '
    'previous stop, 1.2 in a slow hour whose floor was 679 µs/task; round 1: ~1.9). Its '
    'floor, the same folders made by a bare loop, was 84-564 µs/task within this run: this VM\'s disk (see row 7\'s cause: its ext4 has no journal). '
    'This stop\'s change: a task that does not use the cache (this benchmark runs with caching off, as '
    '`--no-cache` does) no longer writes its key to the index that explains later misses (py-spy: 20% '
    'of the busy time went to those rows); 3,000 tasks on /dev/shm, alternated with the code before, '
    '3 pairs: 470-510 -> 426-436 µs/task. On a RAM disk the rest is '
    'CPU-bound: ~680 Python calls and one '
    'thread hop a task, the event loop and the worker handing the GIL back and forth (cProfile of the '
    'loop thread: a quarter of its time in epoll waiting for the worker); the previous stop\'s collector '
    'change took 981/835 -> 834/793 µs (2 alternated pairs). '
    'Validation + planning is ~20-60 µs/task.',
    '**Round 2 targets** (table above): the chain of 10 met its target in this run (0.221 s, in-run '
    '0.092 s) and in every full run since two stops ago (0.25, 0.26, 0.300 and 0.341 s). The ParallelFor x1000 first run met '
    'its target in this run (176 tasks/s, 160-195) and in one of the previous stop\'s two (174 and 134): '
    'the same code, this VM\'s hours (row 7\'s cause). The fully cached x1000 re-run is 0.354 ms a task as a '
    'whole process in this run (0.320-0.560, n=3: one run took 0.56 s; 0.316 in the last run of the previous '
    'stop); alternated with the previous stop\'s code right after this run, 12 pairs on the same root: '
    '0.318 vs 0.326 s whole, in-run 0.161 vs 0.1605 s (medians): the same. Of it ~0.16 ms is the run itself: '
    'the rest is the CLI\'s start (~0.11 s) and the interpreter\'s exit (~0.03 s), whatever the tasks. '
    'Tried in this stop and left out: a youngest-generation threshold of 100,000 allocations, not 10,000 '
    '(gc passes in a cached x1000 re-run 14 -> 2, 7 ms less, 16 pairs), which made the x1000 first run 4% '
    'slower (196 -> 189 tasks/s on /dev/shm, 7 pairs). '
    'The previous stop\'s two changes (row 8): a hop\'s cache lookups read the action index in one statement '
    '(TaskCache.reading_ahead; before, one diskcache read each, ~0.1 ms with the GIL hand-offs), and a '
    'turn\'s lookups go out in one hop a core, not one per 32 (each new worker thread cost the loop ~1.2 ms '
    'while it took the GIL: 15 ms a run for 12 threads). Alternated with the code before each: in-run '
    '0.256 -> 0.206 s (8 pairs), then 0.169 -> 0.158 s (10 pairs); a stage of 300 tasks restoring a 200 KB '
    'artifact each 0.218 -> 0.138 s (8 pairs). What is left of the 0.159 ms, on the loop\'s thread: '
    'the task\'s executor input, launch spec and key (~35 µs), the key\'s canonical JSON (~17 µs), '
    'the coroutines, events and record (~60 µs), the result document (~14 ms a run) and the remembered '
    'keys (~10 ms a run: the index opened, 1,000 rows read and compared). The previous stop\'s change: the CLI starts the zygote ~50 ms earlier (row 1\'s cause); '
    'alternated with the code before, 20 pairs in the same minutes: chain 428 -> 387 ms (medians), '
    'in-run 0.212 -> 0.189 s. Where a chain task\'s ~14 ms goes (timestamps across the processes, '
    'medians of 50 tasks): the task\'s own ~7 ms (~2 ms setting the forked process up as the exec path '
    'would, then 3.5-4 ms of KFP\'s executor), and ~6.4 ms from its exit to the next task\'s first line: '
    '~1 ms for the kernel to finish the exit (a bare interpreter\'s too), ~0.7 ms until the runner reads '
    'the log\'s EOF, 0.6 ms removing the attempt\'s temp folder, ~1.5 ms of engine (outputs, records, the '
    'next task\'s folders and request), ~0.5 ms handing the request to a reaper and ~1.5 ms from the '
    'fork to the child\'s first line (~0.5 ms for a bare interpreter; the rest is mostly the interpreter\'s '
    'own after-fork code, threading._after_fork, whose first Python steps in the child copy ~75 pages: '
    'a cost of any os.fork() of an interpreter that imported threading, as KFP does). The other targets are not met in this run: each needs a '
    'different per-task path (rows 3, 7, 8: the causes above) or, for the cached single task, a '
    'resident process. Tried and left out: a reaper forking its next task\'s process ahead, while '
    'idle (the child waits for its request): chain in-run 0.138 -> 0.135 s (15 alternated pairs), '
    'x1000 170 -> 161 tasks/s (medians of 5 pairs): the fork\'s cost moves, it does not go, and it was '
    'not worth a process that exists between tasks; freezing every object before the CLI exits (~50 ms after a '
    '1,000-task run; a collection first, then the freeze, keeps ~20 ms of it): sqlite connections '
    'opened by worker threads are closed only by a collection, and every library\'s cycles would have '
    'to be known to be safe to leave. What each target needs is in the row causes above.',
    '**ParallelFor x1000 first run (row 7, a round-2 target)**: ' + CAUSES['s7.fan.warm'][len('Cause: '):],
    '**Cache hit (row 4)**: ~2 ms per task in-run; the cached re-run of the example pipeline is 0.39-0.55 s '
    'as a whole process (0.18-0.33 s in-run, subprocess and docker rows above) against 3.6-4.2 s for its first run with '
    'a warm environment (~8-9x). kfp.local with `enable_caching=True` got 0/4 hits on the same pipeline '
    '(its cache never hits a task with an `Output[Metrics]`, and every downstream task then misses), so '
    'its "cached" re-run is a full run.',
    '**kfp.local DockerRunner / use_venv=True rows**: kfp.local has no reusable environment (a fresh '
    'container or venv, and pip installs, on every task), so "warm" and "cached" equal "cold" there; '
    'use_venv=True took ~9–10 s per trivial task here (pip reads a local mirror on this machine).',
    '**Docker rows, data**: both systems read the example CSV from 127.0.0.1 over HTTP (the harness '
    'serves it), so the same URL works inside containers on the host network.',
]


def render(data: dict) -> str:
    fig = data['figures']
    m = data['machine']
    lines = [
        '# localrunner vs kfp.local: benchmark results',
        '',
        f'Generated by `python3 benchmarks/run.py{" --quick" if data["quick"] else ""}` on {data["date"]}; '
        f'the whole invocation took **{data["wall_s"] / 60:.1f} min**. Raw figures: '
        f'`benchmarks/{os.path.basename(data["json_name"])}`.',
        '',
        '## Machine and versions',
        '',
        '| | |', '|---|---|',
    ]
    for k in ('cpus', 'cpu', 'memory', 'os', 'kernel', 'python', 'docker', 'uv', 'kfp', 'localrunner_at_start',
              'localrunner',
              'localrunner_commit_date', 'PYTHONDONTWRITEBYTECODE', 'load_at_start', 'load_at_end'):
        lines.append(f'| {k} | {m.get(k)} |')
    lines += [
        '',
        '## How it was measured',
        '',
        '* Both systems run in the same invocation, alternating (localrunner, kfp.local, localrunner, ...).',
        '  kfp.local (kfp==2.17.3) runs in its own venv (`benchmarks/.work/kfp-venv`); localrunner in',
        '  `benchmarks/.work/lr-venv` (this checkout, editable), with its environment cache in `benchmarks/.work/envs`.',
        '  The checkout is byte-compiled first (`python -m compileall -q localrunner cache` with the lr-venv\'s',
        '  interpreter), as a pip install would do: with `PYTHONDONTWRITEBYTECODE` set, an editable install would',
        '  otherwise compile all of localrunner\'s source at every process start.',
        '* **whole process**: spawn to exit, `os.wait4` (wall clock; peak RSS = largest single process of the tree,',
        '  as `/usr/bin/time` reports it). For localrunner this is the CLI (`localrunner run X.yaml --no-cache -q`),',
        '  for kfp.local a script that imports kfp, `local.init(...)`s and calls the pipeline (the same compiled YAML,',
        '  loaded with `components.load_component_from_file`).',
        '* **in-process**: the pipeline call alone, `perf_counter` in the driver (`lr_driver.py` uses',
        '  `localrunner.api.run_pipeline`, `kfp_driver.py` calls the loaded pipeline). "first" is the first call in a',
        '  fresh process, "repeated" every later call in the same process.',
        '* Trivial task = `@dsl.component def identity(x: int) -> int: return x` (the kfp.local baseline\'s).',
        '  Docker rows use the offline image `localrunner-test-base:bookworm` (tests/support/docker_image.py);',
        '  both systems\' Docker runners use the host network (only it reaches PyPI here).',
        '* Floors: **exec floor** = the task\'s own program (KFP\'s `sh -ec` + `python3 -m kfp.dsl.executor_main`,',
        '  i.e. interpreter start + KFP\'s executor) run directly in the task\'s environment; **docker floor** =',
        '  `docker run --rm IMAGE true`; **docker exec floor** = `docker run --rm` of the environment image running',
        '  that same program.',
        '* "x faster" = kfp.local median / localrunner median (higher is better for localrunner; for GB/s rows it',
        '  is localrunner / floor). Medians, with min–max and n.',
        '',
        '## Results',
        '',
        '| # | scenario | localrunner | kfp.local | localrunner x faster | floor | localrunner / floor |',
        '|---|---|---|---|---|---|---|',
    ]
    flagged = []
    for rid, (src_series, src_row) in BORROWED.items():
        r, src = fig.get(rid), fig.get(src_row)
        if r is not None and src and not r.get(src_series) and src.get(src_series):
            r[src_series] = src[src_series]
            r[f'{src_series}.borrowed'] = src_row
    exec_floor = fig.get('s1.sub.repeat', {}).get('floor', [])
    for rid in [k for k in fig if k.startswith('s2.')]:
        r = fig[rid]
        if exec_floor and 'lr.run_s' in r and 'floor' not in r:
            n = int(rid.split('chain')[-1]) if 'chain' in rid else int(rid.split('fanout')[-1])
            per = med(exec_floor)
            r['floor.computed'] = [per * n if 'chain' in rid else per * n / (os.cpu_count() or 2)]
    for rid, text, unit, lower in ROWS:
        r = fig.get(rid)
        if not r:
            continue
        lr, kfp, floor = r.get('lr', []), r.get('kfp', []), r.get('floor', [])
        num, scen = text.split(' ', 1)
        if rid.startswith('s1.venv'):
            lr = fig.get(rid.replace('venv', 'sub'), {}).get('lr', []) if not lr else lr
        ratio = ''
        if lr and kfp:
            ratio_v = med(kfp) / med(lr) if lower else med(lr) / med(kfp)
            ratio = f'**{ratio_v:.1f}x**' if ratio_v >= 10 else f'**{ratio_v:.2f}x**'
            if ratio_v <= 1.0:
                flagged.append((rid, scen, f'not ahead of kfp.local ({ratio_v:.2f}x)'))
        fl = ''
        over = ''
        if lr and floor:
            o = med(lr) / med(floor) if lower else med(floor) / med(lr)
            fl = fmt(floor, unit)
            over = f'{o:.1f}x'
            if o > 1.5:
                flagged.append((rid, scen, f'{o:.1f}x the floor'))
        extra = []
        if 'lr.run_s' in r:
            extra.append(f'in-run {fmt(r["lr.run_s"])}')
        if 'lr.rss' in r:
            extra.append(f'peak RSS {med(r["lr.rss"]):.0f} MiB')
        if rid.startswith('s2') and 'lr.run_s' in r and 'lr.tasks' in r:
            extra.append(f'**{med(r["lr.tasks"]) / med(r["lr.run_s"]):.1f} tasks/s** in-run')
        if rid.startswith('s5') and 'lr.hits' in r:
            extra.append(f'hits {int(med(r["lr.hits"]))}/{ML_TASKS}')
        if 'lr.validate_us' in r:
            extra.append(f'+ validate {med(r["lr.validate_us"]):.0f} µs/task, plan {med(r["lr.plan_us"]):.1f} µs/task, '
                         f'process {fmt(r["lr.wall"])}, peak RSS {med(r["lr.rss"]):.0f} MiB')
        kextra = []
        if 'kfp.run_s' in r:
            kextra.append(f'in-run {fmt(r["kfp.run_s"])}')
        if 'kfp.rss' in r:
            kextra.append(f'peak RSS {med(r["kfp.rss"]):.0f} MiB')
        if rid.startswith('s2') and 'kfp.run_s' in r:
            n = int(rid.split('chain')[-1]) if 'chain' in rid else int(rid.split('fanout')[-1])
            kextra.append(f'**{n / med(r["kfp.run_s"]):.2f} tasks/s** in-run')
        if 'kfp.hits' in r and (rid.startswith('s5') or rid.startswith('s4')):
            kextra.append(f'hits {int(med(r["kfp.hits"]))}/{ML_TASKS}')
        lr_cell = fmt(lr, unit) + (' — ' + '; '.join(extra) if extra else '') if lr else '–'
        if rid.startswith('s1.venv') and lr:
            lr_cell = '(localrunner subprocess, measured alongside) ' + fmt(lr, unit)
        if rid in BORROWED and r.get('kfp') and not r.get('lr'):
            pass
        kfp_cell = fmt(kfp, unit) + (' — ' + '; '.join(kextra) if kextra else '') if kfp else '–'
        if r.get('lr.failed'):
            lr_cell += f' **({len(r["lr.failed"])} failed)**'
        if r.get('kfp.failed'):
            kfp_cell += f' **({len(r["kfp.failed"])} failed)**'
        if rid == 's6.memo':
            fl = f'first (hashing) call {fmt(r.get("first.x", r.get("first", [])))}'
        if 'floor_bare' in r:
            fl = (fl + '; ' if fl else '') + f'docker floor {fmt(r["floor_bare"], unit)}'
            o2 = med(lr) / med(r['floor_bare']) if lr else None
            if o2:
                over = (over + '; ' if over else '') + f'{o2:.1f}x docker floor'
        if 'floor_py' in r:
            fl = (fl + '; ' if fl else '') + (f'bare `python -c pass` {fmt(r["floor_py"], unit)}; '
                                              f'import localrunner CLI {fmt(r.get("lr_import", []), unit)}; '
                                              f'`from kfp import local` {fmt(r.get("kfp_import", []), unit)}')
        if 'floor_fork' in r and lr:
            if fl:      # the row's main floor: an interpreter that runs nothing
                fl, over = f'`python3 -c pass` {fl}', f'{over} `python3 -c pass`'
            fork = r['floor_fork']
            fl = (fl + '; ' if fl else '') + f'bare fork {fmt(fork, unit)}'
            o3 = med(lr) / med(fork) if lower else med(fork) / med(lr)
            over = (over + '; ' if over else '') + f'{o3:.1f}x bare fork'
            if rid.startswith('s7.fan') and 'lr.whole' in r:
                lr_cell += f' — whole process {med(r["lr.whole"]):.1f} tasks/s'
            if rid == 's7.task.warm' and r.get('first'):
                lr_cell += f' — first task, with the zygote\'s start {fmt(r["first"])}'
        if 'floor.computed' in r:
            fc = r['floor.computed'][0]
            o = med(r['lr.run_s']) / fc
            fl = f'{fc:.2f} s in-run (n x exec floor{"" if "chain" in rid else " / cores"})'
            over = f'{o:.1f}x (in-run)'
            if o > 1.5:
                flagged.append((rid, scen, f'{o:.1f}x the floor (in-run)'))
        if r.get('kfp.borrowed'):
            kfp_cell += f' (kfp.local has no warm or cached state here: its figure is row "{r["kfp.borrowed"]}")'
        if r.get('lr.borrowed'):
            lr_cell += f' (localrunner\'s figure: row "{r["lr.borrowed"]}")'
        lines.append(f'| {num} | {scen} | {lr_cell} | {kfp_cell} | {ratio} | {fl} | {over} |')
    lines += ['', '## Headline', '']
    lines += headline(fig)
    lines += ['', '## Round 2 targets (the engine\'s own cost against the floor)', '']
    lines += targets(fig)
    lines += ['', '## Closing note: where localrunner is not ahead, or > 1.5x its floor', '']
    if not flagged:
        lines.append('Nothing: localrunner is ahead of kfp.local everywhere and within 1.5x of every floor.')
    for rid, scen, why in flagged:
        cause = CAUSES.get(rid, '*cause not analysed yet.*')
        lines.append(f'* **{scen}** — {why}. {cause}')
    for extra in NOTES + data.get('notes', []):
        lines.append(f'* {extra}')
    return '\n'.join(lines) + '\n'


# (row, what, how to read the row's median, target, lower is better)
TARGETS = [
    ('s8.cached_per_task', 'fully cached re-run, per task (ParallelFor x1000, whole run / tasks)',
     lambda r: med(r['lr']), 'ms', 0.3, True),
    ('s3.sched10000', 'scheduler alone, 10,000-task DAG, no-op backend',
     lambda r: med(r['lr']) / 1000, 'ms/task', 0.2, True),
    ('s8.single_cached', 'cached single-task run, whole process / `python3 -c pass`',
     lambda r: med(r['lr']) / med(r['floor']) if r.get('floor') else None, 'x', 1.3, True),
    ('s7.fan.warm', 'ParallelFor x1000 of a trivial lightweight component, first run, 2 cores',
     lambda r: med(r['lr']), 'tasks/s', 150, False),
    ('s2.chain10', '10-task chain, first run, whole process', lambda r: med(r['lr']), 's', 0.4, True),
]


def targets(fig: dict) -> list[str]:
    out = ['| figure | measured | target | met |', '|---|---|---|---|']
    for rid, what, read, unit, goal, lower in TARGETS:
        r = fig.get(rid)
        value = read(r) if r and r.get('lr') else None
        if value is None:
            out.append(f'| {what} | – | {goal} {unit} | not measured |')
            continue
        met = value <= goal if lower else value >= goal
        out.append(f'| {what} | {value:.3g} {unit} | {"≤" if lower else "≥"} {goal} {unit} | '
                   f'{"yes" if met else "**no**"} |')
    return out


def headline(fig: dict) -> list[str]:
    out = []

    def ratio(rid):
        r = fig.get(rid, {})
        if r.get('lr') and r.get('kfp'):
            return med(r['kfp']) / med(r['lr'])
        return None
    for rid, text in [('s1.sub.repeat', 'per task, subprocess (repeated task)'),
                      ('s1.venv.repeat', 'per task vs kfp.local use_venv=True (repeated task)'),
                      ('s1.docker.repeat', 'per task, docker (repeated task)'),
                      ('s2.chain10', 'chain of 10, whole process'),
                      ('s2.fanout200', 'ParallelFor x200, whole process'),
                      ('s5.sub.cold', 'example pipeline cold, subprocess'),
                      ('s5.venv.cold', 'example pipeline cold, vs kfp.local use_venv=True'),
                      ('s5.sub.warm', 'example pipeline, warm environment'),
                      ('s5.sub.cached', 'example pipeline, cached re-run (kfp.local: 0 hits)'),
                      ('s5.docker.cold', 'example pipeline cold, docker'),
                      ('s5.docker.cached', 'example pipeline cached re-run, docker (kfp.local: a cold run)')]:
        v = ratio(rid)
        if v and v >= 1:
            out.append(f'* {text}: localrunner **{v:.1f}x** faster than kfp.local')
        elif v:
            out.append(f'* {text}: localrunner **slower**, {1 / v:.2f}x kfp.local\'s time (see closing note)')
    warm, cold = fig.get('s7.task.warm', {}).get('lr'), fig.get('s7.task.exec', {}).get('lr')
    if warm and cold:
        out.append(f'* warm start vs exec, per trivial task: **{med(cold) / med(warm):.1f}x** faster '
                   f'({fmt(warm)} vs {fmt(cold)})')
    warm, cold = fig.get('s7.fan.warm', {}).get('lr'), fig.get('s7.fan.exec', {}).get('lr')
    if warm and cold:
        out.append(f'* ParallelFor of the trivial task, first run: **{med(warm):.0f} tasks/s** warm, '
                   f'{med(cold):.0f} tasks/s exec ({med(warm) / med(cold):.1f}x)')
    return out


# ---------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='a subset in under 3 minutes')
    ap.add_argument('--only', help='comma-separated scenarios to run (s1,s2,s3,s45,s6,s7,s8)')
    ap.add_argument('--report-only', metavar='JSON', help='re-render the report from a raw-figures JSON')
    a = ap.parse_args()
    if a.report_only:
        data = read_json(a.report_only)
        out_md = os.path.join(HERE, 'RESULTS.md') if not data['quick'] else os.path.join(WORK, 'RESULTS-quick.md')
        with open(out_md, 'w') as f:
            f.write(render(data))
        log(f'wrote {out_md}')
        return 0
    started = time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    load_start = open('/proc/loadavg').read().strip()
    head_start = subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True).stdout.strip()
    ctx = setup(a.quick)
    fig = Figures()
    scenarios = {'s1': s1_per_task, 's2': s2_throughput, 's3': s3_scheduler, 's45': s45_example,
                 's6': s6_hashing, 's7': s7_warm_start, 's8': s8_round2}
    wanted = a.only.split(',') if a.only else list(scenarios)
    for name in wanted:
        t = time.perf_counter()
        try:
            scenarios[name](fig, ctx, a.quick)
        except Exception as e:      # one broken scenario must not lose the others' figures
            log(f'{name} failed: {type(e).__name__}: {e}')
            fig.rows.setdefault('errors', {}).setdefault(name, []).append(f'{type(e).__name__}: {e}')
        log(f'{name} done in {time.perf_counter() - t:.0f}s')
    wall = time.perf_counter() - started
    json_name = 'results-quick.json' if a.quick else 'results.json'
    json_path = os.path.join(WORK if a.quick or a.only else HERE, json_name)   # a partial run never replaces results.json
    facts = machine_facts()
    facts['load_at_start'], facts['load_at_end'] = load_start, open('/proc/loadavg').read().strip()
    # lr-venv is an editable install: engine commits landing during the run are picked up by later processes
    facts['localrunner_at_start'] = head_start
    data = {'date': date, 'quick': a.quick, 'wall_s': wall, 'machine': facts, 'figures': fig.rows,
            'json_name': json_name, 'only': wanted}
    with open(json_path, 'w') as f:
        json.dump(data, f, indent=1)
    out_md = os.path.join(WORK, 'RESULTS-quick.md') if a.quick or a.only else os.path.join(HERE, 'RESULTS.md')
    with open(out_md, 'w') as f:
        f.write(render(data))
    log(f'done in {wall / 60:.1f} min: {out_md}, {json_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
