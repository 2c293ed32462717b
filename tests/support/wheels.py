"""Tiny pure-Python wheels made on the spot, so environment tests install known versions from a
local folder (--find-links) and never depend on what PyPI serves today."""
from __future__ import annotations

import base64
import hashlib
import os
import zipfile


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return f'{path},sha256={digest},{len(data)}'


def make_wheel(folder, name: str, version: str) -> str:
    """Writes NAME==VERSION as a py3-none-any wheel into FOLDER; its module (NAME with '_')
    holds VERSION. Returns the wheel's path."""
    module = name.replace('-', '_')
    dist_info = f'{module}-{version}.dist-info'
    files = {
        f'{module}/__init__.py': f'VERSION = {version!r}\n'.encode(),
        f'{dist_info}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'.encode(),
        f'{dist_info}/WHEEL': b'Wheel-Version: 1.0\nGenerator: localrunner-tests\n'
                              b'Root-Is-Purelib: true\nTag: py3-none-any\n',
    }
    record = '\n'.join([_record_line(p, d) for p, d in files.items()] + [f'{dist_info}/RECORD,,']) + '\n'
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), f'{module}-{version}-py3-none-any.whl')
    with zipfile.ZipFile(path, 'w') as whl:
        for p, d in files.items():
            whl.writestr(p, d)
        whl.writestr(f'{dist_info}/RECORD', record)
    return path
