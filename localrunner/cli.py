"""`localrunner` command line. Exit codes: 0 succeeded, 1 pipeline failed, 2 bad input or
usage; a run canceled by a signal: 128 + the signal (130 Ctrl-C/SIGINT, 143 SIGTERM, 129
SIGHUP), after its tasks are stopped and its result is written (docs/reliability.md)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from localrunner.engine import collector
from localrunner.errors import UsageError
from localrunner.faces import validate

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130      # a run's own outcome: run_command.EXIT_CODES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):       # argparse's usage errors: one line, exit 2
        raise UsageError(f'{self.prog}: {message}')


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('pipeline', help='compiled KFP v2 pipeline (IR YAML or JSON), or PIPELINE.py[:NAME] to '
                                    'compile with your kfp SDK first')
    p.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                   help='pipeline parameter (repeatable); converted by the type the pipeline declares')
    p.add_argument('--params-file', help='JSON or YAML mapping of parameter values')
    p.add_argument('-a', '--artifact', action='append', default=[], metavar='NAME=PATH',
                   help='an input artifact of the pipeline (repeatable; repeat a name for a list)')
    p.add_argument('-v', '--verbose', action='store_true', help="stream every task's output lines")
    p.add_argument('--backend', default=None,
                   help='subprocess (default), auto (Docker for tasks that need their image), docker or kubernetes')
    p.add_argument('--cluster', action='store_true', help='same as --backend kubernetes')
    p.add_argument('--root', default='.localrunner', help='run records and cache (default ./.localrunner)')
    p.add_argument('--result-json', help='write the result document (docs/architecture.md) to this file')
    p.add_argument('--no-cache', action='store_true', help='run every task; no cache entry is read or written')
    p.add_argument('--cache-max-age', metavar='AGE', type=validate.duration,
                   help='ignore cached results older than AGE (e.g. 7d, 12h)')
    p.add_argument('--remote-cache', metavar='s3://BUCKET/PREFIX', type=validate.s3_url,
                   help='share results through S3/MinIO (LOCALRUNNER_S3_ENDPOINT, AWS_ACCESS_KEY_ID, ...)')
    p.add_argument('--remote-cache-secrets', action='store_true',
                   help='also push results of tasks that read a secret to --remote-cache (default: kept local)')
    p.add_argument('--max-parallel', type=validate.positive_int, default=None, help='tasks at once (default: number of cores)')
    p.add_argument('--fail-fast', action='store_true', help='cancel everything else at the first failure')
    p.add_argument('--stop-grace', metavar='DURATION', type=validate.duration,
                   help='a canceled or timed-out task gets this long between SIGTERM and SIGKILL (default 5s)')
    p.add_argument('--gpus', default=None, type=validate.gpus,
                   help='GPUs to schedule: all, none, a count N, or ids 0,2 / device=0,2 (default: detected)')
    p.add_argument('--secret', action='append', default=[], metavar='NAME=PATH',
                   help='local values of a Kubernetes secret (folder of key files, JSON/YAML, or KEY=VALUE lines)')
    p.add_argument('--config-map', action='append', default=[], metavar='NAME=PATH', help='likewise for a config map')
    p.add_argument('--pvc', action='append', default=[], metavar='NAME=DIR', help='host folder backing a PVC')
    p.add_argument('--report', metavar='HTML', help='also write the run as one HTML page (metrics, visualizations)')
    p.add_argument('--junit-xml', metavar='FILE',
                   help='also write the run as JUnit XML (one test case per task) for CI test reports')
    p.add_argument('--image-map', action='append', default=[], metavar='IMAGE=LOCAL',
                   help='run LOCAL wherever the pipeline names IMAGE (mirrors, air-gapped machines)')
    p.add_argument('--quiet', '-q', action='store_true', help='print only the result line')
    p.add_argument('--watch', action='store_true',
                   help='run again whenever the pipeline, its params file or a local input changes (Ctrl-C stops)')
    p.add_argument('--no-warm-start', action='store_true',
                   help='exec every lightweight task afresh instead of forking it from a per-environment zygote')
    p.add_argument('--dry-run', action='store_true',
                   help='run nothing: say which tasks would be served from the cache and why the others miss')


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='localrunner', description='Run Kubeflow Pipelines v2 pipelines locally, cached.')
    sub = parser.add_subparsers(dest='command', parser_class=_Parser)
    run = sub.add_parser('run', help='run a compiled pipeline')
    _add_run_options(run)
    explain = sub.add_parser('explain-cache', help='which tasks would hit the cache, and why the others miss')
    _add_run_options(explain)
    cache = sub.add_parser('cache', help='inspect and maintain the cache')
    cache.add_argument('action', choices=['stats', 'ls', 'show', 'verify', 'gc', 'prune'])
    cache.add_argument('key', nargs='?')
    cache.add_argument('--root', default='.localrunner')
    cache.add_argument('--older-than', metavar='AGE', type=validate.duration)
    cache.add_argument('--max-size', metavar='SIZE')
    cache.add_argument('--keep-runs', type=validate.non_negative_int, default=None, help='gc: runs whose outputs stay reachable')
    cache.add_argument('--json', action='store_true')
    cache.add_argument('--repair', action='store_true', help='verify: drop action entries whose objects are missing')
    envs = sub.add_parser('envs', help='environments built for lightweight components (venvs, images)')
    envs.add_argument('action', choices=['ls', 'prune'])
    envs.add_argument('--older-than', metavar='AGE', type=validate.duration, help='prune: not used for AGE (e.g. 30d)')
    envs.add_argument('--all', action='store_true', help='prune: every environment')
    envs.add_argument('--kind', choices=['venv', 'image'], help='only venvs or only derived Docker images')
    envs.add_argument('--env-dir', help='venv folder (default $LOCALRUNNER_ENV_DIR or the user cache)')
    render = sub.add_parser('render', help='write the Pod manifests a --cluster run would create '
                                           '(no cluster, kubeconfig or bucket needed)')
    render.add_argument('pipeline', help='compiled KFP v2 pipeline, or PIPELINE.py[:NAME]')
    render.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                        help='pipeline parameter (repeatable), checked as `run` checks it')
    render.add_argument('--params-file', help='JSON or YAML mapping of parameter values')
    render.add_argument('-o', '--output', default='-', metavar='DIR|FILE.yaml|-',
                        help='a folder (one file per pod), a YAML file, or - (default: one stream on stdout)')
    render.add_argument('--root', default='.localrunner',
                        help='the run root the paths are computed for (as run --root)')
    render.add_argument('--namespace', help='metadata.namespace (default $LOCALRUNNER_K8S_NAMESPACE or default)')
    render.add_argument('--image-map', action='append', default=[], metavar='IMAGE=LOCAL', help='as run --image-map')
    graph = sub.add_parser('graph', help='the static plan: stages that can run in parallel, longest chain, DOT')
    graph.add_argument('pipeline')
    graph.add_argument('--format', choices=['text', 'json', 'dot'], default='text')
    runs = sub.add_parser('runs', help='list or show past runs')
    runs.add_argument('action', choices=['ls', 'show', 'report', 'prune', 'compare'])
    runs.add_argument('--keep', type=validate.non_negative_int, help='prune: keep the newest N runs')
    runs.add_argument('--older-than', metavar='AGE', type=validate.duration, help='prune: remove runs older than AGE (e.g. 14d)')
    runs.add_argument('-o', '--output', help='report: where to write the HTML (default <run dir>/report.html)')
    runs.add_argument('run_id', nargs='?')
    runs.add_argument('run_id_b', nargs='?', metavar='RUN_B', help='compare: the second run')
    runs.add_argument('--root', default='.localrunner')
    runs.add_argument('--json', action='store_true', help='show: the result document as JSON')
    runs.add_argument('--html', metavar='FILE', help='compare: also write the comparison as a page')
    runs.add_argument('--last', action='store_true', help='compare: the two most recent runs of the same pipeline')
    logs = sub.add_parser('logs', help="a task's log, every attempt (-f: follow until the run ends)")
    logs.add_argument('run_id', metavar='RUN')
    logs.add_argument('task', nargs='?', metavar='TASK', help="the task's path, e.g. condition-1/deploy-model")
    logs.add_argument('-f', '--follow', action='store_true', help='keep printing until the run ends')
    logs.add_argument('--root', default='.localrunner')
    return parser


def _one_line(message: str) -> str:
    """A usage error is one line whatever value it quotes: line breaks and other unprintable
    characters (a NUL in a pipeline name, a control character in a file) are escaped."""
    return ''.join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def _recover(root: str) -> None:
    """Every command that opens a root first records the runs whose runner died (a run does
    it in engine/assembly.py, the others here): docs/reliability.md."""
    from localrunner.engine.recovery import recover_root
    for found in recover_root(root):
        print(f'localrunner: {found.message()}', file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    collector.for_this_process()
    try:
        args = build_parser().parse_args(argv)
        validate.check_destinations(args)
        if args.command in ('cache', 'runs', 'envs'):
            _recover(getattr(args, 'root', '.localrunner'))   # envs has no --root: the default one
        if args.command in ('run', 'explain-cache'):
            from localrunner.backends import warm_prestart
            ahead = warm_prestart.prestart(args)        # before the engine's imports: ~80 ms earlier
            from localrunner.faces.run_command import run_command
            code = run_command(args, explain=args.command == 'explain-cache')
            if code in (0, 1):                          # a run that ran: what it served is the next guess
                warm_prestart.record(ahead)
            return code
        if args.command == 'cache':
            from localrunner.faces.cache_command import cache_command
            return cache_command(args)
        if args.command == 'envs':
            from localrunner.faces.envs_command import envs_command
            return envs_command(args)
        if args.command == 'render':
            from localrunner.faces.render_command import render_command
            return render_command(args)
        if args.command == 'graph':
            from localrunner.faces.graph_command import graph_command
            return graph_command(args)
        if args.command == 'runs':
            from localrunner.faces.runs_command import runs_command
            return runs_command(args)
        if args.command == 'logs':
            from localrunner.faces.logs_command import logs_command
            return logs_command(args)
        build_parser().print_help()
        return EXIT_USAGE
    except UsageError as e:
        print(f'localrunner: error: {_one_line(str(e))}', file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:          # `localrunner cache ls | head`
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print('localrunner: interrupted; run CANCELED', file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == '__main__':
    sys.exit(main())
