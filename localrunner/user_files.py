"""Files the user names on the command line: the pipeline, --params-file, --secret and
--config-map files. Each is read here, once, as text: only a regular file (a FIFO, /dev/zero
or /dev/stdin would hang the command or never end, before anything could be said), at most
MAX_BYTES of it, UTF-8, with universal newlines (what open() in text mode gives).
"""
from __future__ import annotations

import os
import stat

from localrunner.layout import file_kind

MAX_BYTES = 256 << 20          # a compiled pipeline of many thousands of tasks is a few MiB


def read_text(path: str, limit: int = MAX_BYTES, errors: str = 'strict') -> str:
    """The file's text. OSError when it can't be opened; ValueError (UnicodeDecodeError
    among them) saying why it is not read: not a regular file, larger than `limit`, not UTF-8."""
    # O_NONBLOCK: opening a FIFO waits for a writer without it; fstat then refuses it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f'a {file_kind(mode)}, not a regular file')
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:        # read, not stat'ed: a file still growing is bounded too
                raise ValueError(f'larger than {limit >> 20} MiB')
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b''.join(chunks).decode('utf-8', errors)
    return text.replace('\r\n', '\n').replace('\r', '\n')
