"""What a built environment really holds, read from inside it: the interpreter, the platform
and every installed distribution with its exact version.

This, not the *requested* packages and never a host path, is an environment's identity in a
cache key: two machines whose Python 3.11.7 lives in different folders share results, and an
environment rebuilt later with newer versions of an unpinned requirement does not.

One script (READ_SCRIPT) is run by the environment's own interpreter: a venv's python (the
subprocess backend) or the image's python inside the build container (the Docker backend).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from typing import Optional

# Runs under the environment's python (any 3.7+, no third-party import) and prints one JSON
# object. Distributions are read with importlib.metadata in sys.path order; the first of a
# name wins, as for an import. A direct-URL install adds what pins its content (a VCS commit,
# an archive hash), never its URL (often a host path).
READ_SCRIPT = r'''
import json, platform, re, sys, sysconfig
impl = sys.implementation.name
short = {"cpython": "cp", "pypy": "pp"}.get(impl, impl)
interp = "%s%d%d" % (short, sys.version_info[0], sys.version_info[1])
if sysconfig.get_config_var("Py_GIL_DISABLED"):
    interp += "t"
soabi = sysconfig.get_config_var("SOABI") or ""
libc = "musl" if "musl" in soabi else platform.libc_ver()[0]
def pinned(raw):
    try:
        info = json.loads(raw or "null") or {}
    except ValueError:
        return ""
    vcs = info.get("vcs_info") or {}
    if vcs.get("commit_id"):
        return "@%s:%s" % (vcs.get("vcs", "vcs"), vcs["commit_id"])
    archive = info.get("archive_info") or {}
    hashes = archive.get("hashes") or {}
    digest = "sha256=" + hashes["sha256"] if "sha256" in hashes else archive.get("hash")
    if digest:
        return "@" + digest
    return "@local-dir" if "dir_info" in info else ""
packages = {}
try:
    from importlib import metadata
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key not in packages:
                packages[key] = str(dist.version) + pinned(dist.read_text("direct_url.json"))
except ImportError:  # Python 3.7
    import pkg_resources
    for dist in pkg_resources.working_set:
        packages.setdefault(re.sub(r"[-_.]+", "-", dist.project_name).lower(), dist.version)
print(json.dumps({"implementation": impl, "version": platform.python_version(),
                  "interpreter": interp,
                  "platform": "%s_%s" % (sys.platform, platform.machine().lower()),
                  "libc": libc, "packages": packages}, sort_keys=True))
'''

# The runner's own interpreter settings, which must not leak into an environment's python
# (with the runner's PYTHONPATH, pip would find packages "already installed" there).
_LEAKS = ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__')


def clean_environ() -> dict[str, str]:
    """This process's environment without the runner's own interpreter settings."""
    return {k: v for k, v in os.environ.items() if k not in _LEAKS}


@dataclasses.dataclass(frozen=True)
class Resolved:
    implementation: str                       # cpython
    version: str                              # 3.11.7
    interpreter: str                          # cp311 (packaging's interpreter tag)
    platform: str                             # linux_x86_64
    libc: str                                 # glibc / musl / '' (the family, not its version)
    packages: tuple[tuple[str, str], ...]     # sorted (normalised name, exact version)

    def identity(self) -> str:
        """The line that enters a cache key, e.g.
        'cpython-3.11.7 cp311 linux_x86_64 glibc | kfp==2.17.3 six==1.16.0'.
        The glibc version is left out on purpose: it picks which build of the same release
        gets installed (manylinux_2_17 vs _2_28), not which code runs; keying by it would
        split a team's cache by distribution release for nothing."""
        head = ' '.join(p for p in (f'{self.implementation}-{self.version}', self.interpreter,
                                    self.platform, self.libc) if p)
        return f'{head} | ' + (' '.join(f'{n}=={v}' for n, v in self.packages) or '(no packages)')

    def to_json(self) -> dict:
        return {'implementation': self.implementation, 'version': self.version,
                'interpreter': self.interpreter, 'platform': self.platform, 'libc': self.libc,
                'packages': dict(self.packages)}

    @classmethod
    def from_json(cls, data) -> 'Resolved':
        """Raises ValueError for anything that is not a reading of READ_SCRIPT."""
        if not isinstance(data, dict):
            raise ValueError('not an object')
        try:
            fields = {k: data[k] for k in ('implementation', 'version', 'interpreter', 'platform', 'libc')}
            packages = data['packages']
        except KeyError as e:
            raise ValueError(f'no field {e}') from None
        if not all(isinstance(v, str) for v in fields.values()) or not fields['version'] \
                or not isinstance(packages, dict) \
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in packages.items()):
            raise ValueError('fields of the wrong type')
        return cls(packages=tuple(sorted(packages.items())), **fields)

    @classmethod
    def parse(cls, text: str) -> 'Resolved':
        try:
            return cls.from_json(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f'not JSON: {e}') from None


def read(python: str, timeout: float = 120) -> Resolved:
    """Runs READ_SCRIPT under PYTHON (isolated: -I, and without the runner's PYTHONPATH).
    Raises OSError/ValueError when that interpreter cannot tell."""
    try:
        proc = subprocess.run([python, '-I', '-c', READ_SCRIPT], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=clean_environ(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OSError(f'{python} did not list its packages within {timeout:.0f}s') from None
    if proc.returncode != 0:
        tail = ' | '.join(proc.stderr.strip().splitlines()[-3:])
        raise OSError(f'{python} could not list its packages (exit {proc.returncode}): {tail}')
    return Resolved.parse(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else '')


def optional(text: Optional[str]) -> Optional[Resolved]:
    """A stored reading (file, image label), or None when absent or unreadable."""
    if not text:
        return None
    try:
        return Resolved.parse(text)
    except ValueError:
        return None
