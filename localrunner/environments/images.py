"""Derived Docker images for lightweight components: pip-install once, commit, reuse.

KFP's lightweight components pip-install kfp and packages_to_install at the start of every
execution. For the Docker backend we run those installs ONCE per (base image id, python env
key) in a container of the base image, `docker commit` the result as
`localrunner-env:<short key>` (the full key in a label) and start every later task of that
environment from it.

After the installs, the build container's python lists what it now holds (resolved.py's
READ_SCRIPT); the committed image carries that reading as a label (RESOLVED_LABEL), and the
cache key holds the base image id + that reading: the versions really installed, not the
requested ones.

Builds are serialised per key by a file lock (threads and processes alike), so two tasks or
two runs that need the same environment build it once. pip inside the build container gets
the host's pip settings that make sense there: the CA bundle (copied in; PyPI may sit behind
a TLS-inspecting proxy), http(s) index urls, trusted hosts, proxies. Local file:// indexes and
paths are skipped: they do not exist inside the container.
"""
from __future__ import annotations

import codecs
import collections
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from typing import Callable, Iterable, Iterator, Optional

from localrunner.backends.base import LaunchError
from localrunner.environments.python_env import InstallStep, PythonEnv
from localrunner.environments.resolved import READ_SCRIPT, Resolved
from localrunner_cache.locks import file_lock

ENV_IMAGE_REPO = 'localrunner-env'
KEY_LABEL = 'localrunner.env.key'
BASE_LABEL = 'localrunner.env.base'
PYENV_LABEL = 'localrunner.env.python-env'
PACKAGES_LABEL = 'localrunner.env.packages'
RESOLVED_LABEL = 'localrunner.env.resolved'     # JSON of resolved.Resolved, read at build time
BUILD_DIR = '/.localrunner-build'        # inside the build container; deleted before commit
TAIL_LINES = 40
# Exit status 100+i of the build script means step i failed (see _install_script).
_STEP_EXIT_BASE = 100
_READ_EXIT = 99                          # listing the installed packages failed
# The build script prints the environment's reading on one line after this marker.
_RESOLVED_MARKER = '[localrunner] resolved: '
# Part of every image key: bumped when what a derived image carries changes (2: the
# RESOLVED_LABEL), so an image of an older localrunner is rebuilt rather than misread.
_IMAGE_LAYOUT = 2
_NETWORK_TROUBLE = re.compile(r'ConnectionError|ProxyError|Read timed out|ConnectTimeout|'
                              r'Temporary failure in name resolution|Connection reset|'
                              r'SSLError|HTTP error 5\d\d', re.I)

LogSink = Callable[[str], None]


def env_image_key(base_image_id: str, python_env: PythonEnv) -> str:
    """Which derived image to build or reuse: its base image id + the install steps. (The
    cache key holds the base image id + the image's RESOLVED_LABEL instead.)"""
    return hashlib.sha256(f'{base_image_id}\n{python_env.key()}\n{_IMAGE_LAYOUT}'.encode()).hexdigest()


def env_image_tag(key: str) -> str:
    return f'{ENV_IMAGE_REPO}:{key[:16]}'


def env_lock_dir() -> str:
    """Where build locks live: $LOCALRUNNER_ENV_DIR or the user cache dir."""
    base = os.environ.get('LOCALRUNNER_ENV_DIR')
    if not base:
        from localrunner.user_cache import user_cache_path
        base = user_cache_path('environments')
    return os.path.join(base, 'image-locks')


def _key_lock(key: str, lock_dir: Optional[str] = None):
    """One builder per derived image, across threads and processes."""
    lock_dir = lock_dir or env_lock_dir()
    os.makedirs(lock_dir, exist_ok=True)
    return file_lock(os.path.join(lock_dir, key[:32] + '.lock'), what=f'environment image {key[:16]}')


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Splits a stream of byte chunks (Docker logs) into text lines, without the newline."""
    decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
    pending = ''
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split('\n')
        for line in lines:
            yield line.rstrip('\r')
    pending += decoder.decode(b'', final=True)
    if pending:
        yield pending.rstrip('\r')


# ---------------------------------------------------------------- host pip settings


def _is_remote(url: str) -> bool:
    return url.startswith(('http://', 'https://'))


@dataclasses.dataclass(frozen=True)
class PipSettings:
    """The host's pip configuration, reduced to what is valid inside a container."""
    cert: Optional[str] = None                     # host path of a CA bundle
    index_url: Optional[str] = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    proxy: Optional[str] = None
    timeout: Optional[str] = None
    proxy_env: tuple[tuple[str, str], ...] = ()    # HTTP(S)_PROXY / NO_PROXY as set here
    skipped: tuple[str, ...] = ()                  # what we left out, and why (for the log)

    @classmethod
    def from_values(cls, values: dict[str, str], environ: dict[str, str]) -> 'PipSettings':
        """VALUES: pip option name -> value, as `pip config list` resolves them."""
        skipped = []

        def remote(name: str) -> tuple[str, ...]:
            kept = []
            for url in values.get(name, '').split():
                if _is_remote(url):
                    kept.append(url)
                else:
                    skipped.append(f'{name} {url} (a local path is not visible in a container)')
            return tuple(kept)

        index = remote('index-url')
        cert = values.get('cert') or environ.get('PIP_CERT') or environ.get('SSL_CERT_FILE')
        if not cert and os.path.exists('/etc/ssl/certs/ca-certificates.crt'):
            cert = '/etc/ssl/certs/ca-certificates.crt'
        if values.get('constraint'):
            skipped.append(f"constraint {values['constraint']} (a host file)")
        proxy_env = tuple((k, v) for k, v in sorted(environ.items())
                          if k.upper() in ('HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY'))
        return cls(cert=cert if cert and os.path.isfile(cert) else None,
                   index_url=index[0] if index else None,
                   extra_index_urls=remote('extra-index-url'),
                   find_links=remote('find-links'),
                   trusted_hosts=tuple(values.get('trusted-host', '').split()),
                   proxy=values.get('proxy') or None,
                   timeout=values.get('timeout') or values.get('default-timeout') or None,
                   proxy_env=proxy_env, skipped=tuple(skipped))

    @classmethod
    @functools.lru_cache(maxsize=1)
    def from_host(cls) -> 'PipSettings':
        """Reads `python -m pip config list` (files + PIP_* env, pip's own precedence)."""
        try:
            out = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ''
        values = parse_pip_config_list(out)
        # no pip in this interpreter (a uv venv): PIP_* variables still say what the user wants
        for name, value in os.environ.items():
            if name.startswith('PIP_'):
                values.setdefault(name[4:].lower().replace('_', '-'), value)
        return cls.from_values(values, dict(os.environ))

    def script_env(self) -> dict[str, str]:
        """Environment for pip inside the build container (exported by the script, so
        none of it ends up in the committed image's config)."""
        env = {'PIP_DISABLE_PIP_VERSION_CHECK': '1', 'PIP_ROOT_USER_ACTION': 'ignore',
               'PIP_NO_CACHE_DIR': '1', 'PIP_BREAK_SYSTEM_PACKAGES': '1',
               'PIP_NO_INPUT': '1'}
        if self.cert:
            env['PIP_CERT'] = f'{BUILD_DIR}/ca.crt'
        if self.index_url:
            env['PIP_INDEX_URL'] = self.index_url
        if self.extra_index_urls:
            env['PIP_EXTRA_INDEX_URL'] = ' '.join(self.extra_index_urls)
        if self.find_links:
            env['PIP_FIND_LINKS'] = ' '.join(self.find_links)
        if self.trusted_hosts:
            env['PIP_TRUSTED_HOST'] = ' '.join(self.trusted_hosts)
        if self.proxy:
            env['PIP_PROXY'] = self.proxy
        if self.timeout:
            env['PIP_DEFAULT_TIMEOUT'] = self.timeout
        env.update(self.proxy_env)
        return env


def parse_pip_config_list(text: str) -> dict[str, str]:
    """`pip config list` lines ("global.cert='/x'", ":env:.timeout='60'") -> option -> value.
    PIP_* env beats the install section, which beats global: pip's precedence."""
    rank = {':env:': 3, 'install': 2, 'global': 1}
    best: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([^.=]+)\.([A-Za-z0-9_-]+)=(.*)$", line.strip())
        if not match or match.group(1) not in rank:
            continue
        section, name, raw = match.groups()
        try:
            value = ' '.join(shlex.split(raw))
        except ValueError:
            value = raw.strip("'\"")
        name = name.replace('_', '-')
        if name not in best or rank[section] >= best[name][0]:
            best[name] = (rank[section], value)
    return {name: value for name, (_, value) in best.items()}


# ---------------------------------------------------------------- the build


@dataclasses.dataclass(frozen=True)
class EnvImage:
    image_id: str
    tag: str
    key: str
    built: bool          # False: an existing image was reused
    seconds: float
    resolved: Resolved   # what its python holds, read at build time


def describe_step(step: InstallStep) -> str:
    return 'pip install ' + ' '.join(shlex.quote(a) for a in step.pip_args())


def _install_script(python_env: PythonEnv, env: dict[str, str]) -> str:
    lines = ['set -u', 'cd /']
    lines += [f'export {k}={shlex.quote(v)}' for k, v in sorted(env.items())]
    # KFP's own prologue does the same: some base images have python but no pip yet.
    lines += ['PY=python3; command -v python3 >/dev/null 2>&1 || PY=python',
              '"$PY" -m pip --version >/dev/null 2>&1 || "$PY" -m ensurepip --default-pip '
              f'|| {{ echo "no pip in this image and ensurepip failed"; exit {_STEP_EXIT_BASE}; }}']
    total = len(python_env.steps)
    for i, step in enumerate(python_env.steps, 1):
        args = ' '.join(shlex.quote(a) for a in step.pip_args())
        lines.append(f'echo {shlex.quote(f"[localrunner] step {i}/{total}: {describe_step(step)}")}')
        lines.append(f'"$PY" -m pip install --progress-bar off {args} '
                     f'|| exit {_STEP_EXIT_BASE + i}')
    # not isolated (-I): the image's own PYTHONPATH & co are what its tasks will see too
    lines.append(f'printf %s {shlex.quote(_RESOLVED_MARKER)}; '
                 f'"$PY" {BUILD_DIR}/read_env.py || exit {_READ_EXIT}')
    lines.append(f'rm -rf {BUILD_DIR}')
    return '\n'.join(lines) + '\n'


def _build_context(script: str, cert: Optional[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        files = {'install.sh': script.encode(), 'read_env.py': READ_SCRIPT.encode()}
        if cert:
            files['ca.crt'] = open(cert, 'rb').read()
        for name, data in files.items():
            info = tarfile.TarInfo(f'{BUILD_DIR.lstrip("/")}/{name}')
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _find(client, key: str) -> Optional[tuple[str, Resolved]]:
    """(id, reading) of the derived image for KEY when it exists, really is that key and
    carries a readable RESOLVED_LABEL (an image without one is built again)."""
    import docker.errors
    try:
        image = client.images.get(env_image_tag(key))
    except docker.errors.ImageNotFound:
        return None
    labels = (image.attrs.get('Config') or {}).get('Labels') or {}
    if labels.get(KEY_LABEL) != key:
        return None
    try:
        return image.id, Resolved.parse(labels.get(RESOLVED_LABEL) or '')
    except ValueError:
        return None


def find_env_image(client, key: str) -> Optional[str]:
    """The id of the derived image for KEY when it exists (and really is that key)."""
    found = _find(client, key)
    return found[0] if found else None


def ensure_env_image(client, base_image_id: str, python_env: PythonEnv, log: LogSink, *,
                     pip: Optional[PipSettings] = None, lock_dir: Optional[str] = None,
                     container_labels: Optional[dict] = None) -> EnvImage:
    """The derived image of BASE_IMAGE_ID with PYTHON_ENV installed, built when missing.
    container_labels: for the build container only (the backend's run labels: a canceled
    or dead run's build is found by them), never on the image."""
    started = time.monotonic()
    key = env_image_key(base_image_id, python_env)
    tag = env_image_tag(key)
    found = _find(client, key)
    if found:
        return EnvImage(found[0], tag, key, False, time.monotonic() - started, found[1])
    with _key_lock(key, lock_dir):
        found = _find(client, key)   # built by another thread/process meanwhile
        if found:
            return EnvImage(found[0], tag, key, False, time.monotonic() - started, found[1])
        image_id, reading = _build(client, base_image_id, python_env, key, log,
                                   pip or PipSettings.from_host(), container_labels or {})
    seconds = time.monotonic() - started
    log(f'[localrunner] environment image {tag} built in {seconds:.1f}s')
    return EnvImage(image_id, tag, key, True, seconds, reading)


def _build(client, base_id: str, python_env: PythonEnv, key: str, log: LogSink,
           pip: PipSettings, container_labels: dict) -> tuple[str, Resolved]:
    import docker.errors
    base_config = client.images.get(base_id).attrs.get('Config') or {}
    labels = {KEY_LABEL: key, BASE_LABEL: base_id, PYENV_LABEL: python_env.key(),
              PACKAGES_LABEL: ' '.join(python_env.packages)[:4000]}
    log(f'[localrunner] building environment image {env_image_tag(key)} from {base_id[:19]}: '
        + '; '.join(describe_step(s) for s in python_env.steps))
    for note in pip.skipped:
        log(f'[localrunner] host pip setting left out: {note}')
    script = _install_script(python_env, pip.script_env())
    container = client.containers.create(
        base_id, entrypoint=['/bin/sh'], command=[f'{BUILD_DIR}/install.sh'],
        network_mode='host',  # containers reach the package index only via the host network
        user='0' if base_config.get('User') else None,  # install system-wide even if USER is set
        labels={**labels, **container_labels}, detach=True)
    try:
        container.put_archive('/', _build_context(script, pip.cert))
        container.start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        reading: Optional[str] = None
        for line in iter_lines(container.logs(stream=True, follow=True)):
            if line.startswith(_RESOLVED_MARKER):
                reading = line[len(_RESOLVED_MARKER):]
                continue
            tail.append(line)
            log(line)
        status = container.wait().get('StatusCode', -1)
        if status != 0:
            raise _install_error(python_env, base_id, status, list(tail))
        try:
            resolved = Resolved.parse(reading or '')
        except ValueError as exc:
            raise LaunchError(f'the environment on image {base_id[:19]} was installed but its '
                              f'package list is unreadable ({exc}): {reading!r:.200}',
                              retryable=False) from None
        log(f'[localrunner] environment holds: {resolved.identity()}')
        labels = {**labels, RESOLVED_LABEL: json.dumps(resolved.to_json(), sort_keys=True)}
        # The committed image must look like the base (entrypoint, cmd, env, user, workdir),
        # not like the build container: the daemon fills every field we leave empty from it.
        conf = {'Labels': labels,
                'Env': base_config.get('Env') or ['PATH=/usr/local/sbin:/usr/local/bin:'
                                                  '/usr/sbin:/usr/bin:/sbin:/bin'],
                'Entrypoint': base_config.get('Entrypoint') or [],
                'Cmd': base_config.get('Cmd') or ['/bin/sh'],
                'User': base_config.get('User') or '',
                'WorkingDir': base_config.get('WorkingDir') or '/'}
        committed = container.commit(repository=ENV_IMAGE_REPO, tag=key[:16], conf=conf,
                                     message=f'localrunner environment {key}')
        return committed.id, resolved
    except docker.errors.APIError as exc:
        raise LaunchError(f'building the environment image for {python_env.packages} on '
                          f'{base_id[:19]} failed: {exc}', retryable=True) from exc
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def _install_error(python_env: PythonEnv, base_id: str, status: int, tail: list[str]) -> LaunchError:
    steps = python_env.steps
    index = status - _STEP_EXIT_BASE
    if 1 <= index <= len(steps):
        what = f'step {index}/{len(steps)} `{describe_step(steps[index - 1])}`'
    elif index == 0:
        what = 'making pip available (ensurepip)'
    elif status == _READ_EXIT:
        what = "listing the installed packages with the image's python"
    else:
        what = f'the install script (exit {status})'
    output = '\n'.join(tail)
    return LaunchError(f'building the environment on image {base_id[:19]} failed at {what}; '
                       f'last lines of pip output:\n{output}',
                       retryable=bool(_NETWORK_TROUBLE.search(output)))
