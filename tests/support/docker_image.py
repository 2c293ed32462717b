"""The base image the Docker tests run in, built offline from Debian's mirror.

No container registry is reachable from CI, so `docker pull python:3.11` is not an option:
we debootstrap a minimal bookworm with python3 + pip, put this machine's CA bundle in it
(PyPI is only reachable through a TLS-inspecting proxy) and `docker import` it.

    python3 -m tests.support.docker_image [TAG]     # what .ci/run calls before pytest

The debootstrapped root is cached as a tarball under CACHE_DIR, so a rebuild (new CA,
pruned image) takes seconds instead of minutes.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_TAG = 'localrunner-test-base:bookworm'
CACHE_DIR = os.environ.get('LOCALRUNNER_TEST_CACHE', '/var/cache/localrunner-test')
SUITE = 'bookworm'
MIRROR = 'http://deb.debian.org/debian'
INCLUDE = ('python3', 'python3-pip', 'python3-venv', 'ca-certificates')
HOST_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'
EXTRA_CAS = '/usr/local/share/ca-certificates/*.crt'
BUNDLE_IN_IMAGE = '/etc/ssl/certs/ca-certificates.crt'
IMAGE_ENV = {
    'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'LANG': 'C.UTF-8',
    'SSL_CERT_FILE': BUNDLE_IN_IMAGE,
    'REQUESTS_CA_BUNDLE': BUNDLE_IN_IMAGE,
    'PIP_CERT': BUNDLE_IN_IMAGE,
    'PIP_DISABLE_PIP_VERSION_CHECK': '1',
    'PIP_ROOT_USER_ACTION': 'ignore',
}


def _log(msg: str) -> None:
    print(f'[base-image] {msg}', file=sys.stderr, flush=True)


@contextlib.contextmanager
def _file_lock(path: str):
    """Cross-process exclusive lock (two pytest workers or CI + a developer)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a+') as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _image_id(tag: str) -> str | None:
    out = subprocess.run(['docker', 'image', 'inspect', '--format', '{{.Id}}', tag],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _rootfs_tarball() -> str:
    """Path of the cached debootstrap result; debootstraps (minutes) when absent."""
    digest = hashlib.sha256(' '.join((SUITE, MIRROR) + INCLUDE).encode()).hexdigest()[:12]
    tarball = os.path.join(CACHE_DIR, f'{SUITE}-minbase-{digest}.tar')
    if os.path.exists(tarball):
        return tarball
    if shutil.which('debootstrap') is None:
        raise RuntimeError('debootstrap is not installed (apt-get install -y debootstrap)')
    os.makedirs(CACHE_DIR, exist_ok=True)
    root = tempfile.mkdtemp(prefix='debootstrap-', dir=CACHE_DIR)
    try:
        _log(f'debootstrap {SUITE} into {root} (a few minutes, once)')
        started = time.monotonic()
        subprocess.run(['debootstrap', '--variant=minbase', '--include=' + ','.join(INCLUDE),
                        SUITE, root, MIRROR], check=True, stdout=subprocess.DEVNULL)
        # apt's downloaded .debs are dead weight in every image
        shutil.rmtree(os.path.join(root, 'var/cache/apt/archives'), ignore_errors=True)
        partial = tarball + '.partial'
        subprocess.run(['tar', '-C', root, '--numeric-owner', '-cf', partial, '.'], check=True)
        os.replace(partial, tarball)  # atomic: a killed build never leaves a half tarball
        _log(f'debootstrap done in {time.monotonic() - started:.0f}s -> {tarball}')
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def _customise(root: str) -> None:
    # Debian's PEP 668 marker makes `pip install` refuse to touch the system interpreter;
    # a throwaway image is exactly the case where that is what we want.
    for marker in glob.glob(os.path.join(root, 'usr/lib/python3*/EXTERNALLY-MANAGED')):
        os.remove(marker)
    # This machine's CA bundle (it trusts the TLS-inspecting proxy) becomes the image's.
    bundle = open(HOST_BUNDLE, 'rb').read() if os.path.exists(HOST_BUNDLE) else b''
    local_ca_dir = os.path.join(root, 'usr/local/share/ca-certificates')
    os.makedirs(local_ca_dir, exist_ok=True)
    for crt in sorted(glob.glob(EXTRA_CAS)):
        data = open(crt, 'rb').read()
        shutil.copyfile(crt, os.path.join(local_ca_dir, os.path.basename(crt)))
        if data.strip() not in bundle:
            bundle += b'\n' + data
    target = os.path.join(root, BUNDLE_IN_IMAGE.lstrip('/'))
    if os.path.lexists(target):
        os.remove(target)
    with open(target, 'wb') as fh:
        fh.write(bundle)
    # `python` as well as `python3`: components and users type either.
    for name in ('python', 'python3'):
        link = os.path.join(root, 'usr/bin', name)
        if not os.path.exists(link):
            os.symlink('python3.11' if name == 'python3' else 'python3', link)


def _build(tag: str) -> str:
    tarball = _rootfs_tarball()
    root = tempfile.mkdtemp(prefix='rootfs-', dir=CACHE_DIR)
    try:
        subprocess.run(['tar', '-C', root, '--numeric-owner', '-xf', tarball], check=True)
        _customise(root)
        changes = []
        for key, value in IMAGE_ENV.items():
            changes += ['--change', f'ENV {key}={value}']
        tar = subprocess.Popen(['tar', '-C', root, '--numeric-owner', '-c', '.'],
                               stdout=subprocess.PIPE)
        imported = subprocess.run(['docker', 'import', *changes, '-', tag], stdin=tar.stdout,
                                  capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f'docker import {tag} failed: {imported.stderr.strip()}')
    finally:
        shutil.rmtree(root, ignore_errors=True)
    image_id = _image_id(tag)
    if not image_id:
        raise RuntimeError(f'docker import said nothing failed, yet {tag} is missing')
    return image_id


def ensure_base_image(tag: str = DEFAULT_TAG) -> str:
    """Returns the image id of TAG, building it once (offline) when it does not exist."""
    image_id = _image_id(tag)
    if image_id:
        return image_id
    with _file_lock(os.path.join(CACHE_DIR, 'base-image.lock')):
        image_id = _image_id(tag)  # another process may have built it while we waited
        if image_id:
            return image_id
        started = time.monotonic()
        image_id = _build(tag)
        _log(f'built {tag} ({image_id[:19]}) in {time.monotonic() - started:.0f}s')
        return image_id


if __name__ == '__main__':
    print(ensure_base_image(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TAG))
