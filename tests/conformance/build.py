"""Compiles the conformance cases' pipeline sources (tests/conformance/sources/*.py) with the
installed kfp SDK into tests/conformance/cases/<case>/<file>.yaml.

    python -m tests.conformance.build            # (re)write every compiled case file
    python -m tests.conformance.build --check    # compare instead; exit 1 and name what differs

Each source module declares `CASES = {case name: pipeline function | Compile | {file: ...}}`.
A bare function or Compile means {'pipeline.yaml': it}. Compile carries what a plain
`compiler.Compiler().compile` cannot say:
  env   environment variables the SDK must see when it is imported (it reads
        KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT once, at import: kfp/dsl/pipeline_context.py),
        so every distinct env compiles in its own process;
  edit  exact text replacements applied to the compiler's output, for IR forms the SDK never
        writes (`enableCache: false`, no cachingOptions, another image); each `old` must occur
        exactly `count` times, so an SDK whose output moved fails loudly instead of silently
        skipping the edit.
The committed files are then exactly what this script writes, and test_conformance_build.py
asserts they still are with the installed SDK.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CASES_DIR = os.path.join(HERE, 'cases')
SOURCES_PACKAGE = 'tests.conformance.sources'
# read by the kfp SDK at import; a compile env that does not name it must not inherit it
SDK_ENV = ('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT',)


@dataclasses.dataclass(frozen=True)
class Replace:
    old: str
    new: str
    count: int = 1


@dataclasses.dataclass
class Compile:
    pipeline: Callable
    env: dict = dataclasses.field(default_factory=dict)
    edit: tuple = ()                      # Replace(...) applied in order

    def env_key(self) -> str:
        return json.dumps(self.env, sort_keys=True)


def source_modules() -> list[str]:
    path = os.path.join(HERE, 'sources')
    return sorted(f'{SOURCES_PACKAGE}.{m.name}' for m in pkgutil.iter_modules([path]) if not m.name.startswith('_'))


def declared() -> dict[str, Compile]:
    """'<case>/<file>' -> Compile, over every source module. Two modules may not declare one case."""
    out: dict[str, Compile] = {}
    owner: dict[str, str] = {}
    for name in source_modules():
        module = importlib.import_module(name)
        for case, spec in getattr(module, 'CASES', {}).items():
            if case in owner:
                raise ValueError(f'case {case!r} declared by both {owner[case]} and {name}')
            owner[case] = name
            files = spec if isinstance(spec, dict) else {'pipeline.yaml': spec}
            for fname, entry in files.items():
                out[f'{case}/{fname}'] = entry if isinstance(entry, Compile) else Compile(entry)
    return out


def apply_edits(text: str, edits, where: str) -> str:
    for e in edits:
        found = text.count(e.old)
        if found != e.count:
            raise ValueError(f'{where}: edit expects {e.count} occurrence(s) of {e.old!r}, compiler output has {found}')
        text = text.replace(e.old, e.new)
    return text


def compile_here(targets: list[str]) -> dict[str, str]:
    """Compiles the named targets in this process (the caller set the env): target -> YAML text."""
    from kfp import compiler
    entries = declared()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            entry = entries[target]
            path = os.path.join(tmp, 'out.yaml')
            compiler.Compiler().compile(entry.pipeline, package_path=path)
            with open(path, encoding='utf-8') as f:
                out[target] = apply_edits(f.read(), entry.edit, target)
    return out


def compile_all(only: Optional[set] = None) -> dict[str, str]:
    """Every declared target -> the YAML text the installed SDK writes for it. One process per
    distinct compile env (the SDK reads it at import)."""
    entries = declared()
    groups: dict[str, list[str]] = {}
    for target, entry in sorted(entries.items()):
        if only is None or target.split('/')[0] in only:
            groups.setdefault(entry.env_key(), []).append(target)
    out = {}
    for env_key, targets in groups.items():
        env = {k: v for k, v in os.environ.items() if k not in SDK_ENV}
        env.update(json.loads(env_key))
        env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
        proc = subprocess.run([sys.executable, '-m', 'tests.conformance.build', '--emit', *targets],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f'compiling {targets} failed:\n{proc.stderr[-4000:]}')
        out.update(json.loads(proc.stdout))
    return out


def differences(compiled: dict[str, str]) -> list[str]:
    """What the committed case files lack or hold differently from `compiled`, one entry each
    (with a short unified diff)."""
    problems = []
    for target, text in sorted(compiled.items()):
        path = os.path.join(CASES_DIR, target)
        if not os.path.exists(path):
            problems.append(f'{target}: not committed (run python -m tests.conformance.build)')
            continue
        with open(path, encoding='utf-8') as f:
            committed = f.read()
        if committed != text:
            diff = ''.join(list(difflib.unified_diff(committed.splitlines(True), text.splitlines(True),
                                                     f'committed {target}', 'compiler output'))[:40])
            problems.append(f'{target}: differs from the compiler output\n{diff}')
    return problems


def orphans(compiled: dict[str, str]) -> list[str]:
    """Compiled-looking case files (pipeline*.yaml) that no source declares, and case folders
    without a pipeline.yaml source."""
    problems = []
    for case in sorted(os.listdir(CASES_DIR)):
        folder = os.path.join(CASES_DIR, case)
        if not os.path.isdir(folder):
            continue
        if f'{case}/pipeline.yaml' not in compiled:
            problems.append(f'{case}: no source declares its pipeline.yaml')
        for fname in sorted(os.listdir(folder)):
            if fname.startswith('pipeline') and fname.endswith('.yaml') and f'{case}/{fname}' not in compiled:
                problems.append(f'{case}/{fname}: no source declares it')
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check', action='store_true', help='compare with the committed files; write nothing')
    ap.add_argument('--emit', nargs='+', metavar='CASE/FILE', help=argparse.SUPPRESS)
    ap.add_argument('cases', nargs='*', help='only these cases (default: all)')
    args = ap.parse_args(argv)
    if args.emit:                          # the child of compile_all: print JSON, nothing else
        json.dump(compile_here(args.emit), sys.stdout)
        return 0
    compiled = compile_all(set(args.cases) or None)
    if args.check:
        problems = differences(compiled) + ([] if args.cases else orphans(compiled))
        for p in problems:
            print(p)
        print(f'{len(compiled)} compiled file(s), {len(problems)} problem(s)')
        return 1 if problems else 0
    for target, text in sorted(compiled.items()):
        path = os.path.join(CASES_DIR, target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    print(f'wrote {len(compiled)} file(s) under {os.path.relpath(CASES_DIR, REPO)}')
    return 0


if __name__ == '__main__':
    # run as the importable module, so the sources' Compile/Replace are this module's classes
    from tests.conformance import build
    sys.exit(build.main())
