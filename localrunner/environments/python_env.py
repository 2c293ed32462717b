"""Lifts KFP's pip-install prologue off a lightweight component's command.

KFP compiles a lightweight Python component into
    sh -c "<ensure pip>; python3 -m pip install ... 'kfp==X' ... && \"$0\" \"$@\"" sh -ec '<run executor>' ...
i.e. it installs kfp and packages_to_install before EVERY execution. We parse the pip
install steps out of the prologue, build that environment once (a venv or a derived image,
keyed by the steps), and run the rest of the command ("$0" "$@") inside it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import shlex
from typing import Optional

# Options of `pip install` that change what gets installed (and so the environment key).
_VALUE_OPTIONS = {'--index-url', '-i', '--extra-index-url', '--trusted-host', '--find-links', '-f',
                  '--constraint', '-c', '--requirement', '-r'}
# Options that change nothing about the result.
_IGNORED_FLAGS = {'--quiet', '-q', '--no-warn-script-location', '--upgrade', '-U', '--user',
                  '--disable-pip-version-check', '--no-cache-dir'}
_PIP_INSTALL = re.compile(r'python3?\s+-m\s+pip\s+install\s+')


@dataclasses.dataclass(frozen=True)
class InstallStep:
    """One `pip install` of the prologue: requirement strings and the options that matter."""
    requirements: tuple[str, ...]
    index_urls: tuple[str, ...] = ()          # first is --index-url (when given), rest extras
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    no_deps: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def pip_args(self, trusted_hosts: bool = True) -> list[str]:
        """This step as `pip install` arguments (uv takes the same, bar --trusted-host)."""
        args = []
        if self.index_urls:
            args += ['--index-url', self.index_urls[0]]
        for url in self.index_urls[1:] + self.extra_index_urls:
            args += ['--extra-index-url', url]
        for host in self.trusted_hosts if trusted_hosts else ():
            args += ['--trusted-host', host]
        if self.no_deps:
            args.append('--no-deps')
        return args + list(self.requirements)


@dataclasses.dataclass(frozen=True)
class PythonEnv:
    """The environment a lightweight component asks for: ordered pip install steps."""
    steps: tuple[InstallStep, ...]

    @functools.cached_property
    def _key(self) -> str:
        blob = json.dumps([s.to_json() for s in self.steps], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def key(self) -> str:
        """A stable digest of the steps: same steps, same environment (made once: every
        task of a ParallelFor asks)."""
        return self._key

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(r for s in self.steps for r in s.requirements)

    def describe(self) -> dict:
        return {'steps': [s.to_json() for s in self.steps]}


def _parse_install_args(text: str) -> Optional[InstallStep]:
    try:
        tokens = shlex.split(text)
    except ValueError:
        return None
    reqs, index, extra, trusted, no_deps = [], [], [], [], False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ('&&', ';', '||'):
            break
        if tok in ('--index-url', '-i'):
            index.append(tokens[i + 1]); i += 2; continue
        if tok == '--extra-index-url':
            extra.append(tokens[i + 1]); i += 2; continue
        if tok == '--trusted-host':
            trusted.append(tokens[i + 1]); i += 2; continue
        if tok == '--no-deps':
            no_deps = True; i += 1; continue
        if tok in _IGNORED_FLAGS:
            i += 1; continue
        if tok in _VALUE_OPTIONS or tok.startswith('-'):
            return None  # an option we do not model: don't guess
        reqs.append(tok)
        i += 1
    if not reqs:
        return None
    return InstallStep(tuple(reqs), tuple(index), tuple(extra), tuple(trusted), no_deps)


def lift_prologue(command: list[str], args: list[str]) -> tuple[Optional[PythonEnv], list[str]]:
    """Returns (environment, argv to run inside it); (None, command+args) when the command
    is not KFP's lightweight-component form."""
    argv = list(command) + list(args)
    if len(command) < 3 or command[0] != 'sh' or command[1] != '-c':
        return None, argv
    env = _environment_of(command[2])
    return (None, argv) if env is None else (env, list(command[3:]) + list(args))


@functools.lru_cache(maxsize=256)
def _environment_of(script: str) -> Optional[PythonEnv]:
    """The environment KFP's pip prologue `script` installs, or None when it is not that
    form. Parsed once per script: every task of a ParallelFor carries the same one."""
    if 'pip install' not in script or not script.rstrip().endswith('"$0" "$@"'):
        return None
    steps = []
    for match in _PIP_INSTALL.finditer(script):
        rest = script[match.end():]
        # one install command ends at the next && / newline
        end = len(rest)
        for sep in ('&&', '\n'):
            pos = rest.find(sep)
            if pos != -1:
                end = min(end, pos)
        step = _parse_install_args(rest[:end])
        if step is None:
            return None
        steps.append(step)
    return PythonEnv(tuple(steps)) if steps else None
