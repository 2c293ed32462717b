"""`localrunner run` and `localrunner explain-cache`."""
from __future__ import annotations

import os
import sys

from localrunner.engine.assembly import assemble, write_json_atomic
from localrunner.engine import interrupts
from localrunner.engine.caching import CacheSettings, caching_disabled_by_env, parse_duration
from localrunner.engine.k8s_local import LocalSources, read_key_values
from localrunner.engine.runtime import RunOptions
from localrunner.errors import UsageError
from localrunner.faces.console import ConsoleView
from localrunner.layout import RootLayout
from localrunner.params import assignment, parse_cli_params, read_params_file, resolve_root_artifacts
from localrunner.spec import load_pipeline

EXIT_CODES = {'SUCCEEDED': 0, 'FAILED': 1, 'CANCELED': 130}


def exit_code(result) -> int:
    """0 succeeded, 1 failed; canceled by a signal: 128 + its number, the shell's convention
    (130 SIGINT, 143 SIGTERM, 129 SIGHUP); canceled otherwise: 130."""
    if result.state.value == 'CANCELED' and result.signal:
        return interrupts.exit_code(result.signal)
    return EXIT_CODES.get(result.state.value, 1)


def build_options(args, explain: bool) -> RunOptions:
    """RunOptions from the parsed command line (argparse types already checked each value's
    form: faces/validate.py; what needs the machine, like which GPU ids exist, is checked here)."""
    from localrunner.backends.gpus import GpuRequestError, detect_gpus, parse_gpus
    max_age = parse_duration(args.cache_max_age) if args.cache_max_age else None
    settings = {'stop_grace': parse_duration(args.stop_grace)} if args.stop_grace else {}
    try:
        gpu_ids = parse_gpus(args.gpus, detect_gpus()) if args.gpus else detect_gpus()
    except GpuRequestError as e:
        raise UsageError(f'--gpus {args.gpus}: {e}') from None
    return RunOptions(
        root=args.root,
        backend='kubernetes' if args.cluster else (args.backend or 'subprocess'),
        backend_settings=settings,
        warm_start=not args.no_warm_start,
        max_parallel=args.max_parallel or os.cpu_count() or 2,
        fail_fast=args.fail_fast,
        cache=CacheSettings(enabled=not args.no_cache, max_age_s=max_age, remote=args.remote_cache,
                            disabled_by_default=caching_disabled_by_env(),
                            share_secrets=args.remote_cache_secrets),
        k8s=LocalSources(secrets=_pairs(args.secret, '--secret'), config_maps=_pairs(args.config_map, '--config-map'),
                         pvcs=_pairs(args.pvc, '--pvc')),
        dry_run=explain or args.dry_run,
        gpu_ids=tuple(gpu_ids),
        image_map=_image_map(args.image_map),
    )


def _image_map(values: list[str]) -> dict[str, str]:
    return dict(assignment(v, '--image-map', 'IMAGE=LOCAL_IMAGE') for v in values or [])


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """--secret/--config-map/--pvc NAME=PATH options as {name: absolute path}."""
    out = {}
    for v in values or []:
        k, path = assignment(v, flag, 'NAME=PATH')
        out[k] = os.path.abspath(os.path.expanduser(path))
        if flag != '--pvc' and not os.path.exists(out[k]):
            raise UsageError(f'{flag} {v}: {out[k]} does not exist')
        if flag != '--pvc':
            try:
                read_key_values(out[k])       # a file that can't be read is said before anything runs
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise UsageError(f'{flag} {v}: {" ".join(str(e).split())}') from None
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
        source = compile_python(source, RootLayout(args.root).compiled_dir)
    pipeline = load_pipeline(source)
    from_file = read_params_file(args.params_file) if args.params_file else {}
    root_artifacts = resolve_root_artifacts(pipeline.root.get('inputDefinitions', {}), args.artifact)
    options = build_options(args, explain)
    view = ConsoleView(quiet=args.quiet, explain=options.dry_run, verbose=args.verbose, root=args.root)
    run = assemble(pipeline, options, params=from_file, cli_params=parse_cli_params(args.param),
                   root_artifacts=root_artifacts, subscribers=(view,))
    result = run.execute()
    for why in run.unsaved:
        print(f'localrunner: warning: the run\'s record could not be saved ({why}); the next command '
              f'records it CANCELED', file=sys.stderr)
    data = result.to_json()
    if args.result_json:
        write_json_atomic(args.result_json, result.final_text())
    if args.report and not options.dry_run:
        from localrunner.faces.report import write_report
        print(f'report: {write_report(data, args.report)}')
    if getattr(args, 'junit_xml', None) and not options.dry_run:
        from localrunner.faces.junit import write_junit
        print(f'junit: {write_junit(data, args.junit_xml)}')
    if args.quiet:
        print(f'{result.run_id} {result.state.value}', flush=True)
    return exit_code(result), data
