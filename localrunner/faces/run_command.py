"""`localrunner run` and `localrunner explain-cache`."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from localrunner.api import make_backend
from localrunner.backends.base import LaunchError
from localrunner.engine.caching import CacheSettings, caching_disabled_by_env, parse_duration
from localrunner.engine.events import EventBus
from localrunner.engine.k8s_local import LocalSources
from localrunner.engine.runtime import Run, RunOptions
from localrunner.errors import UsageError
from localrunner.faces.console import ConsoleView
from localrunner.params import parse_cli_params, read_params_file, resolve_pipeline_params, resolve_root_artifacts
from localrunner.spec import load_pipeline

EXIT_CODES = {'SUCCEEDED': 0, 'FAILED': 1, 'CANCELED': 130}


def write_json_atomic(path: str, data: dict) -> None:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.result-')
    with os.fdopen(fd, 'w') as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def build_options(args, explain: bool) -> RunOptions:
    from localrunner.backends.gpus import detect_gpus, parse_gpus
    max_age = None
    if args.cache_max_age:
        try:
            max_age = parse_duration(args.cache_max_age)
        except ValueError as e:
            raise UsageError(f'--cache-max-age: {e}') from None
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError('--max-parallel: must be at least 1')
    try:
        gpu_ids = parse_gpus(args.gpus, detect_gpus()) if args.gpus else detect_gpus()
    except Exception as e:
        raise UsageError(f'--gpus {args.gpus}: {e}') from None
    return RunOptions(
        root=args.root,
        max_parallel=args.max_parallel or os.cpu_count() or 2,
        fail_fast=args.fail_fast,
        cache=CacheSettings(enabled=not args.no_cache, max_age_s=max_age, remote=_remote(args.remote_cache),
                            disabled_by_default=caching_disabled_by_env()),
        k8s=LocalSources(secrets=_pairs(args.secret, '--secret'), config_maps=_pairs(args.config_map, '--config-map'),
                         pvcs=_pairs(args.pvc, '--pvc')),
        dry_run=explain or args.dry_run,
        gpu_ids=tuple(gpu_ids),
        image_map=_image_map(args.image_map),
    )


def _remote(url):
    if url and not url.startswith('s3://'):
        raise UsageError(f'--remote-cache {url}: expected s3://BUCKET[/PREFIX]')
    return url


def _image_map(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values or []:
        if '=' not in v:
            raise UsageError(f'--image-map {v}: expected IMAGE=LOCAL_IMAGE')
        k, image = v.split('=', 1)
        out[k] = image
    return out


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """--secret/--config-map/--pvc NAME=PATH options as {name: absolute path}."""
    out = {}
    for v in values or []:
        if '=' not in v:
            raise UsageError(f'{flag} {v}: expected NAME=PATH')
        k, path = v.split('=', 1)
        out[k] = os.path.abspath(os.path.expanduser(path))
        if flag != '--pvc' and not os.path.exists(out[k]):
            raise UsageError(f'{flag} {v}: {out[k]} does not exist')
    return out


def run_command(args, explain: bool = False) -> int:
    if not getattr(args, 'watch', False) or explain or args.dry_run:
        return run_once(args, explain)[0]
    from localrunner.faces.watch import watch
    return watch(args, run_once)


def run_once(args, explain: bool = False) -> tuple[int, dict]:
    """One run; returns (exit code, result JSON)."""
    from localrunner.faces.from_python import compile_python, is_python_target
    source = args.pipeline
    if is_python_target(source):
        source = compile_python(source, os.path.join(os.path.abspath(args.root), 'compiled'))
    pipeline = load_pipeline(source)
    from_file = read_params_file(args.params_file) if args.params_file else {}
    params = resolve_pipeline_params(pipeline.root.get('inputDefinitions', {}), parse_cli_params(args.param),
                                     from_file)
    root_artifacts = resolve_root_artifacts(pipeline.root.get('inputDefinitions', {}), args.artifact)
    options = build_options(args, explain)
    backend_name = 'kubernetes' if args.cluster else (args.backend or 'subprocess')
    from localrunner.engine.runtime import new_run_id
    options.run_id = new_run_id(pipeline.name)
    if options.dry_run:
        # explain must not leave a run behind: its run folder is scratch
        options.run_dir = tempfile.mkdtemp(prefix='localrunner-explain-')
    backend = make_backend(backend_name, run_id=options.run_id,
                           **({'warm_start': False} if args.no_warm_start and backend_name == 'subprocess' else {}))
    try:
        backend.check()
    except LaunchError as e:
        backend.close()
        raise UsageError(f'--backend {backend_name}: {e}') from None
    bus = EventBus()
    view = ConsoleView(quiet=args.quiet, explain=options.dry_run, verbose=args.verbose)
    bus.subscribe(view)
    run = Run(pipeline, params, backend, options, bus, root_artifacts=root_artifacts)
    try:
        result = run.execute()
    finally:
        backend.close()
        if options.dry_run:
            shutil.rmtree(run.run_dir, ignore_errors=True)
    data = result.to_json()
    if not options.dry_run:
        write_json_atomic(os.path.join(result.run_dir, 'result.json'), data)
    if args.result_json:
        write_json_atomic(args.result_json, data)
    if args.report and not options.dry_run:
        from localrunner.faces.report import write_report
        print(f'report: {write_report(data, args.report)}')
    if args.quiet:
        print(f'{result.run_id} {result.state.value}', flush=True)
    return EXIT_CODES.get(result.state.value, 1), data
