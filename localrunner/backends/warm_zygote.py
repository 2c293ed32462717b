"""The warm-start zygote: one per environment, it imports KFP's executor once, and every task
is a fork of it, made by one of its reapers (see localrunner/backends/warm.py, which starts it
and talks to it).

Runs under the component's own interpreter (the venv's python3), so it uses the standard
library only and never imports localrunner. Started as

    python3 warm_zygote.py CONTROL_FD RUNNER_PID MODULE

in the backend's working directory, in its own session, with the environment's interpreter
start-up variables. It stays single-threaded (fork is only safe without threads).

Three kinds of process:
  zygote -> R (a reaper) -> T (a task).
R is T's parent: it reports T's exit status to the runner over the task's own socket and
keeps T unreaped (a zombie keeps its pid and process group id) until the runner has read it,
so the runner's killpg(T) can never reach a recycled pid. R needs nothing of the zygote once
it has its task: a zygote that dies leaves running tasks alone. The reapers are a pool: the
zygote hands each task to an idle one (forking a new one when none is idle), and a reaper
serves its tasks one after the other. A reaper per task would cost a fork and an exit of the
interpreter and its copy-on-write page faults, ~2 ms of CPU a task (benchmarks/reaper_bench.py).
An idle reaper leaves when the zygote does. T becomes exactly what
`sh -ec 'program_path=$(mktemp -d) ... python3 -m kfp.dsl.executor_main ...'` would have run
(the command KFP compiles, kfp/dsl/component_factory.py:_get_command_and_args_for_lightweight_component).
"""
import sys
import os

# `python3 -m` puts the working directory first on sys.path; this script's own folder
# (localrunner/backends) must not shadow anything the component imports.
sys.path[0] = os.getcwd()

import atexit  # noqa: E402
import builtins  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

_PR_SET_PDEATHSIG = 1
_STATUS = struct.Struct('=i')
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when our parent (thread) dies; if it is already gone, go now."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _initial_environ() -> dict:
    """The environment this process was started with (/proc keeps the original block),
    before the interpreter's own start-up changes (PEP 538 sets LC_CTYPE)."""
    with open('/proc/self/environ', 'rb') as f:
        items = [entry.split(b'=', 1) for entry in f.read().split(b'\0') if b'=' in entry]
    return {os.fsdecode(k): os.fsdecode(v) for k, v in items}


# What KFP's executor imports only once it runs (measured with kfp 2.17: argparse's gettext
# and the executor's artifact handling); standard library, no threads, no environment read.
_RUNTIME_IMPORTS = ('locale', 'shutil')


def _preload(module: str) -> None:
    """Imports the executor module and everything it imports, then forgets the module
    itself: each task runs it as __main__, as `python3 -m` does (runpy warns when the
    module is already in sys.modules)."""
    for name in _RUNTIME_IMPORTS:
        __import__(name)
    __import__(module)
    del sys.modules[module]
    parent, _, name = module.rpartition('.')
    if parent and hasattr(sys.modules.get(parent), name):
        delattr(sys.modules[parent], name)
    _fill_caches()


def _fill_caches() -> None:
    """Fills, once, a cache that every task would otherwise fill again with the same values:
    `re`'s compiled patterns. KFP's executor_main makes an argparse parser and parses its
    options, which compiles five patterns (~0.5 ms a task, a sixth of a trivial task's
    Python time); compiled here,
    each task finds them in re's cache as an exec'd process finds them after its first
    parser. A compiled pattern is immutable, so nothing a task sees changes."""
    import argparse
    parser = argparse.ArgumentParser(prog='zygote', add_help=True)
    parser.add_argument('--component_module_path', type=str)
    parser.parse_args(['--component_module_path', 'x'])     # the option's nargs pattern


def main() -> int:
    control_fd, runner_pid, module = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    _die_with_parent(runner_pid)
    control = socket.socket(fileno=control_fd)
    # A fresh interpreter's signal state, which every task gets back.
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[sig] = signal.getsignal(sig)
        except (OSError, ValueError):
            pass
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    initial = _initial_environ()
    added = {k: v for k, v in os.environ.items() if k not in initial}
    error = None
    try:
        _preload(module)
    except BaseException as e:          # reported; the runner then runs this environment cold
        error = f'{type(e).__name__}: {e}'
    if error is None and os.fstat(2).st_size:
        # stdout and stderr are the zygote's log file: an import that prints (a warning)
        # would print in every exec'd task's log, and never in a warm one's
        error = f'importing {module} printed output'
    threads = len(os.listdir('/proc/self/task'))
    control.send(json.dumps({'pid': os.getpid(), 'threads': threads, 'added': added,
                             'error': error}).encode())
    if error or threads != 1:
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the kernel reaps the reapers
    gc.collect()
    gc.freeze()             # children share these pages: keep the collector off them
    _Pool(control, handlers, mask).serve()


class _Pool:
    """The zygote's loop: a task from the runner (its socket and log pipe) goes to an idle
    reaper, or to a new one. A reaper says b'I' on its channel when it is idle again; its
    channel's EOF means it is gone."""

    def __init__(self, control: socket.socket, handlers: dict, mask):
        self.control, self.handlers, self.mask = control, handlers, mask
        self.reapers: dict[int, tuple[socket.socket, int]] = {}   # channel fd -> (channel, pidfd)
        self.idle: list[int] = []                                 # channel fds, last idle last
        self.poller = select.poll()
        self.poller.register(control, select.POLLIN)

    def serve(self) -> None:
        while True:
            events = self.poller.poll()
            # reapers first: one idle since the last poll takes this poll's task
            for fd, _ in sorted(events, key=lambda e: e[0] == self.control.fileno()):
                if fd != self.control.fileno():
                    self._heard(fd)
                    continue
                msg, fds, _, _ = socket.recv_fds(self.control, 16, 2)
                if not msg:     # the runner closed its end, or died: nothing to flush or finalize
                    self._leave()
                if len(fds) == 2:
                    self._dispatch(fds)
                for fd in fds:
                    os.close(fd)

    def _heard(self, fd: int) -> None:
        channel, _ = self.reapers[fd]
        try:
            said = channel.recv(16)
        except OSError:
            said = b''
        if said:
            self.idle.append(fd)
        else:
            self._drop(fd)

    def _dispatch(self, fds: list[int]) -> None:
        """Hands the task to a reaper; when none can take it, the runner sees its task socket
        close (not started) and runs it exec'd."""
        while True:
            fd = self.idle.pop() if self.idle else self._spawn()
            if fd is None:
                return
            try:
                socket.send_fds(self.reapers[fd][0], [b'J'], fds)
                return
            except OSError:     # it died since it said it was idle
                self._drop(fd)

    def _spawn(self):
        """A new reaper's channel fd, or None when it cannot be forked."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return None
        if pid == 0:
            _reaper(theirs, [self.control, ours] + [c for c, _ in self.reapers.values()], self.handlers, self.mask)
        theirs.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        self.reapers[ours.fileno()] = (ours, pidfd)
        self.poller.register(ours, select.POLLIN)
        return ours.fileno()

    def _drop(self, fd: int) -> None:
        channel, pidfd = self.reapers.pop(fd)
        self.poller.unregister(fd)
        if fd in self.idle:
            self.idle.remove(fd)
        channel.close()
        if pidfd >= 0:
            os.close(pidfd)

    def _leave(self) -> None:
        """Exits once its reapers are gone (each leaves at its channel's EOF: at once when
        idle, after its task when busy), or after a second: stopping the zygote stops the
        idle ones with it, and never waits long on a running task."""
        waiting = select.poll()
        left = 0
        for channel, pidfd in self.reapers.values():
            channel.close()
            if pidfd >= 0:
                waiting.register(pidfd, select.POLLIN)
                left += 1
        deadline = time.monotonic() + 1.0
        while left > 0 and time.monotonic() < deadline:
            for fd, _ in waiting.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                waiting.unregister(fd)
                left -= 1
        os._exit(0)


# ---------------------------------------------------------------------------- R: the reaper

def _reaper(channel: socket.socket, zygote_socks: list, handlers: dict, mask) -> None:
    """Serves the tasks the zygote hands it, one at a time, until the zygote is gone; never
    returns."""
    try:
        # Only the zygote may hold what it had open (its death must show; a task's log pipe
        # must reach EOF when the task ends): all of it is closed here. Its sockets are
        # detached first, so that no socket object here ever closes a reused fd number.
        for sock in zygote_socks:
            sock.detach()
        _close_fds(keep=(channel.fileno(),))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        while True:
            msg, fds, _, _ = socket.recv_fds(channel, 16, 2)
            if not msg:
                return
            if len(fds) == 2:
                _serve(fds[0], fds[1], handlers, mask)
            else:
                for fd in fds:
                    os.close(fd)
            channel.send(b'I')
    finally:
        os._exit(0)


def _serve(sock_fd: int, log_fd: int, handlers: dict, mask) -> None:
    """Starts T, tells the runner its pid, reports its exit status, reaps T. Closes both fds."""
    sock = socket.socket(fileno=sock_fd)
    log = [log_fd]          # closed once: by the report (before the status goes), or here
    try:
        request = _read_request(sock)
    except (OSError, EOFError, ValueError):
        request = None      # the runner went away before T started: nothing to do
    try:
        if request is not None:
            _start_and_watch(sock, request, log, handlers, mask)
    finally:
        sock.close()
        for fd in log:
            os.close(fd)


def _start_and_watch(sock: socket.socket, request: dict, log: list, handlers: dict, mask) -> None:
    sync_r, sync_w = os.pipe()
    me = os.getpid()        # T dies with this process; asked after the fork, a dead one's pid is wrong
    try:
        pid = os.fork()
    except OSError:         # the runner sees its task socket close: not started
        os.close(sync_r)
        os.close(sync_w)
        return
    if pid == 0:
        _task(request, me, sock, log[0], sync_w, handlers, mask)
    os.close(sync_w)
    try:
        os.read(sync_r, 1)      # T is in its own session now (or already dead)
    except OSError:
        pass
    os.close(sync_r)
    _watch(sock, pid, log)


def _read_request(sock: socket.socket) -> dict:
    head = _recv_exact(sock, 4)
    return json.loads(_recv_exact(sock, struct.unpack('=I', head)[0]))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError('runner closed the task socket')
        buf += chunk
    return bytes(buf)


def _watch(sock: socket.socket, pid: int, log: list) -> None:
    """Plays the exec path's `sh`: holds the log pipe until T ends, says how T died, reports
    T's exit status, then reaps it once the runner has read that. The runner's end closing
    before then means the runner died: T's process group is killed (no task outlives it)."""
    group_signalled = False     # the runner is signalling T's group: sh would die of it too
    pidfd = -1
    try:
        pidfd = os.pidfd_open(pid)
        sock.sendall(b'S' + _STATUS.pack(pid))
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(sock, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if sock.fileno() in events:
                data = sock.recv(64)
                if not data:
                    _kill_group(pid)
                    return
                group_signalled = group_signalled or b'G' in data
            if pidfd in events:
                _report(sock, pid, log, group_signalled)
                return
    except OSError:
        _kill_group(pid)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        os.waitpid(pid, 0)


def _report(sock: socket.socket, pid: int, log: list, group_signalled: bool) -> None:
    """T has ended: its status goes to the runner as subprocess reports one (the exit code,
    or -N for death by signal N); T stays a zombie until the runner has read it."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    if code < 0 and not group_signalled and -code not in (signal.SIGINT, signal.SIGPIPE):
        # what dash prints for a child killed by a signal (dash src/jobs.c: sprint_status)
        text = signal.strsignal(-code) or f'Signal {-code}'
        if info.si_code == os.CLD_DUMPED:
            text += ' (core dumped)'
        try:
            os.write(log[0], text.encode() + b'\n')
        except OSError:
            pass
    os.close(log.pop())         # the runner's log pump reaches EOF: then it reads the status
    try:
        sock.sendall(b'X' + _STATUS.pack(code))
        while sock.recv(64):
            pass
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


# ---------------------------------------------------------------------------- T: the task

def _task(request: dict, reaper: int, sock: socket.socket, log_fd: int, sync_w: int, handlers: dict,
          mask) -> None:
    """Becomes the task's process; never returns."""
    code = 1
    try:
        os.setsid()                      # its own session and process group, as the exec path's
        _die_with_parent(reaper)
        for sig, handler in handlers.items():
            if signal.getsignal(sig) != handler:
                signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.write(sync_w, b'.')
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sock.detach()
        _close_fds()
        _reopen_stdio()
        code = _run(request)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        pass
    finally:
        os._exit(code & 0xFF)


def _close_fds(keep=()) -> None:
    """Only stdin/stdout/stderr (and KEEP) stay open, as subprocess's close_fds gives the exec path."""
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _reopen_stdio() -> None:
    """sys.stdout and sys.stderr made for the task's log pipe, as interpreter start-up
    makes them (Python/pylifecycle.c: create_stdio); the zygote's were made for its log file."""
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
        old = getattr(sys, f'__{name}__')
        buffered = not old.write_through          # PYTHONUNBUFFERED / -u
        buf = io.open(fd, 'wb', -1 if buffered else 0, closefd=False)
        raw = buf.raw if buffered else buf
        raw.name = f'<{name}>'
        stream = io.TextIOWrapper(buf, old.encoding, old.errors, '\n',
                                  buffered and (raw.isatty() or fd == 2), not buffered)
        stream.mode = 'w'
        setattr(sys, name, stream)
        setattr(sys, f'__{name}__', stream)


def _run(request: dict) -> int:
    """Sets up the process as the exec path would have it, then does what KFP's
    `sh -ec` script does: writes the component's source to a fresh temporary folder and runs
    `_KFP_RUNTIME=true python3 -m MODULE --component_module_path PATH "$@"`."""
    os.umask(request['umask'])
    for res, limits in request['rlimits']:
        if resource.getrlimit(res) != tuple(limits):
            try:
                resource.setrlimit(res, tuple(limits))
            except (OSError, ValueError):
                pass
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    # what this process cached from the zygote's environment and file system
    time.tzset()
    if 'tempfile' in sys.modules:
        sys.modules['tempfile'].tempdir = None
    importlib.invalidate_caches()
    linecache.clearcache()
    sys.path[0] = os.getcwd()

    tmp = os.environ.get('TMPDIR') or '/tmp'
    try:
        program_path = _mktemp_d(tmp)
    except OSError as e:
        os.write(2, f"mktemp: failed to create directory via template '{tmp}/tmp.XXXXXXXXXX': "
                    f"{e.strerror}\n".encode())
        return 1
    module_path = os.path.join(program_path, 'ephemeral_component.py')
    try:
        with open(module_path, 'wb') as f:
            f.write(os.fsencode(request['source']))
    except OSError as e:
        os.write(2, f'sh: 3: cannot create {module_path}: {e.strerror}\n'.encode())
        return 2
    module = request['module']
    args = ['--component_module_path', module_path] + request['args']
    sys.argv = ['-m'] + args
    sys.orig_argv = ['python3', '-m', module] + args
    return _run_main(module)


_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
_UNBIASED = 256 - 256 % len(_ALPHABET)      # bytes below this map evenly onto the alphabet


def _mktemp_d(parent: str) -> str:
    """mktemp -d: a new 0700 folder tmp.XXXXXXXXXX, its name from one read of the kernel's
    random source (SystemRandom.choice reads it once a character)."""
    while True:
        name = ''.join(_ALPHABET[b % len(_ALPHABET)] for b in os.urandom(24) if b < _UNBIASED)[:10]
        if len(name) < 10:              # 24 bytes give fewer than 10 usable: about 1 in 10^9
            continue
        path = os.path.join(parent, 'tmp.' + name)
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _run_main(module: str) -> int:
    """`python3 -m MODULE` to its exit status: runpy as the interpreter calls it, then the
    interpreter's own exit (Python/pythonrun.c, Python/pylifecycle.c: Py_RunMain,
    _Py_HandleSystemExit, Py_FinalizeEx)."""
    main_module = types.ModuleType('__main__')
    main_module.__dict__.update(__builtins__=builtins, __annotations__={})
    sys.modules['__main__'] = main_module
    interrupted = False
    try:
        runpy._run_module_as_main(module)
        code = 0
    except SystemExit as e:
        code = _system_exit_code(e)
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next   # it starts at runpy, as under `python3 -m`
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        sys.excepthook(type(e), e, e.__traceback__)
        interrupted = isinstance(e, KeyboardInterrupt)
        code = 1
    try:
        threading._shutdown()             # non-daemon threads finish first
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            code = 120
    if interrupted:                       # an uncaught KeyboardInterrupt ends by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _system_exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    try:
        sys.stderr.write(f'{e.code}\n')
    except Exception:
        pass
    return 1


if __name__ == '__main__':
    sys.exit(main())
