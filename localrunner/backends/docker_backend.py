"""Runs each task attempt in a Docker container (docker SDK).

- Paths keep their meaning: the attempt folder and every mount appear at the SAME path in
  the container (inputs read-only), so artifact URIs are valid on both sides.
- Host networking: on machines where only the host can reach the package index / proxy.
- Lightweight components (spec.python_env) run in a derived image built once per
  environment (localrunner.environments.images), never pip-installing per task.
- Every container (tasks' and environment builds') carries the labels localrunner.run /
  localrunner.task and the runner's identity (pid, start time, boot id, pid namespace), and is
  removed after success, failure, terminate(), kill(), cancel() (builds), close() and at
  interpreter exit. A runner that dies leaves them: engine/recovery.py removes those of its
  run (by the run label) when the next command opens the root, and every docker run first
  removes the containers of any runner of this machine that is gone (sweep_orphans).
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
import weakref
from typing import Optional

from localrunner.backends import procs
from localrunner.backends.base import (Backend, BackendOptions, Capabilities, Execution, LaunchError, LaunchSpec,
                                       LineSink, LogSink)
from localrunner.environments import images
from localrunner.layout import PathEscape, is_inside, open_log, within

RUN_LABEL = 'localrunner.run'
TASK_LABEL = 'localrunner.task'
MANAGED_LABEL = 'localrunner.managed'
ROLE_LABEL = 'localrunner.role'              # 'task' or 'build' (an environment image build)
RUNNER_LABELS = {'pid': 'localrunner.runner.pid', 'start': 'localrunner.runner.start',
                 'boot': 'localrunner.runner.boot', 'pidns': 'localrunner.runner.pidns'}
_KILLED = 137   # what `docker wait` reports for SIGKILL; used when the status is lost


def _docker():
    import docker  # imported lazily: the subprocess backend must not need it
    return docker


class _RunState:
    """What the exit-time sweep needs; holds no reference to the backend itself."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = None
        self.created_any = False


def runner_labels() -> dict[str, str]:
    """Who started a container: this process (procs.identity), as labels."""
    ident = procs.identity()
    return {label: str(ident.get(key) or '') for key, label in RUNNER_LABELS.items()}


def _runner_of(labels: dict) -> dict:
    ident = {key: labels.get(label) for key, label in RUNNER_LABELS.items()}
    try:
        ident['pid'] = int(ident['pid'])
        ident['start'] = int(ident['start']) if ident['start'] else None
    except (TypeError, ValueError):
        return {}
    return ident


def sweep_orphans(client) -> int:
    """Removes the containers whose runner is gone: started on this boot of this machine
    (same pid namespace) by a process that no longer runs; or left stopped by a runner of
    an earlier boot. A container whose runner cannot be judged from here and that still runs
    (another machine sharing this engine) is left alone. Returns how many were removed."""
    removed = 0
    with contextlib.suppress(Exception):
        for container in client.containers.list(all=True, ignore_removed=True, filters={'label': MANAGED_LABEL}):
            labels = container.labels or {}
            ident = _runner_of(labels)
            if not ident:
                continue                 # made by a localrunner without runner labels
            if procs.can_judge(ident):
                gone = not procs.is_alive(ident)
            else:
                gone = ident.get('boot') != procs.boot_id() and container.status != 'running'
            if gone:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
                    removed += 1
    return removed


def remove_run_containers(run_id: str, client=None) -> int:
    """Removes every container of run RUN_ID (recovery of a dead run). Raises when no
    Docker engine answers."""
    own = client is None
    if own:
        client = _docker().from_env(timeout=20)
    try:
        return _remove_labelled(client, [f'{RUN_LABEL}={run_id}'], ignore=(_docker().errors.NotFound,))
    finally:
        if own:
            client.close()


def _remove_labelled(client, labels: list[str], ignore: tuple = (Exception,)) -> int:
    """Force-removes every container, running or not, that carries all of LABELS
    ('key=value'); returns how many. A container gone between the listing and its removal is
    no error: the listing skips what it can no longer inspect (docker-py inspects each id it
    lists, and would raise NotFound for the whole listing), and a removal's IGNORE errors are
    passed over."""
    removed = 0
    for container in client.containers.list(all=True, ignore_removed=True, filters={'label': labels}):
        with contextlib.suppress(*ignore):
            container.remove(force=True)
            removed += 1
    return removed


def _sweep(state: _RunState) -> None:
    """Removes any container of this run still there (interpreter exit, close())."""
    if not state.created_any or state.client is None:
        return
    with contextlib.suppress(Exception):
        _remove_labelled(state.client, [f'{RUN_LABEL}={state.run_id}'])


class DockerBackend(Backend):
    name = 'docker'
    capabilities = Capabilities(containers=True, volumes=True, isolated=True, local_gpus=True)

    def __init__(self, options: Optional[BackendOptions] = None, *, client=None,
                 pip: Optional[images.PipSettings] = None):
        """options.settings: pull_timeout (s, default 30), stop_grace (s, default 5),
        user ('host': containers run as this process's uid:gid unless it is root, so files
        they write into mounted folders stay the host user's; None: the image's user),
        env_lock_dir. client and pip are injected by tests."""
        super().__init__(options)
        settings = self.options.settings
        self._state = _RunState(self.options.run_id or uuid.uuid4().hex[:12])
        self._state.client = client
        self.pull_timeout = self.options.seconds('pull_timeout', 30.0)
        self.stop_grace = self.options.seconds('stop_grace', 5.0)
        self._user = settings.get('user', 'host')
        self._pip = pip
        self._env_lock_dir = settings.get('env_lock_dir')
        self._lock = threading.Lock()
        self._image_ids: dict[str, str] = {}
        self._env_images: dict[tuple[str, str], images.EnvImage] = {}
        self._held_logs: dict[tuple[str, str], list[str]] = {}   # see _env_image
        self._ncpu: Optional[int] = None
        self._live: set[DockerExecution] = set()
        self._finalizer = weakref.finalize(self, _sweep, self._state)

    # ------------------------------------------------------------ client and images

    @property
    def run_id(self) -> str:
        return self._state.run_id

    @property
    def client(self):
        if self._state.client is None:
            docker = _docker()
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as exc:
                raise LaunchError(f'no Docker engine answers ({exc}); start dockerd or use '
                                  'the subprocess backend', retryable=False) from exc
            self._state.client = client
            sweep_orphans(client)      # what dead runners of this machine left
        return self._state.client

    def image_id(self, ref: str) -> str:
        """The immutable id (sha256:...) of image REF, pulling it when it is not here.
        Resolved once per backend (= per run), so every task of a run sees the same image."""
        with self._lock:
            if ref in self._image_ids:
                return self._image_ids[ref]
        docker = _docker()
        try:
            image_id = self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            image_id = self._pull(ref)
        except docker.errors.APIError as exc:
            raise LaunchError(f'cannot inspect image {ref}: {exc}', retryable=True) from exc
        with self._lock:
            self._image_ids[ref] = image_id
        return image_id

    def _pull(self, ref: str) -> str:
        docker = _docker()
        repo, tag = docker.utils.parse_repository_tag(ref)
        result: dict = {}

        def pull():
            try:
                result['id'] = self.client.images.pull(repo, tag=tag or 'latest').id
            except Exception as exc:  # reported below, from the caller's thread
                result['error'] = exc

        # The SDK's pull has no timeout; a thread lets a dead registry fail in bounded time.
        worker = threading.Thread(target=pull, name=f'pull {ref}', daemon=True)
        worker.start()
        worker.join(self.pull_timeout)
        if worker.is_alive():
            raise LaunchError(f'image {ref} is not on this machine and pulling it did not finish '
                              f'within {self.pull_timeout:.0f}s (no registry reachable?)',
                              retryable=False)
        if 'error' in result:
            raise LaunchError(f"image {ref} is not on this machine and cannot be pulled: "
                              f"{result['error']}", retryable=False)
        return result['id']

    def check(self) -> None:
        self.client        # noqa: B018 - raises LaunchError when no engine answers

    def environment_fingerprint(self, spec: LaunchSpec, log: Optional[LogSink] = None,
                                build: bool = True) -> Optional[str]:
        image_id = self.image_id(spec.image)
        if spec.python_env is None:
            return image_id
        if not build and images.find_env_image(self.client, images.env_image_key(image_id, spec.python_env)) is None:
            return None
        # The base image id + what the derived image's python really holds (its
        # RESOLVED_LABEL), not the requested packages. The derived image is built here when
        # missing, for the reason VenvCache.resolved gives for venvs.
        return f'{image_id}+{self._env_image(spec, log).resolved.identity()}'

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        self.run_image(spec, log)

    def run_image(self, spec: LaunchSpec, log: Optional[LogSink] = None) -> str:
        """The id of the image the attempt runs in: spec.image, or its derived environment
        image (built now when missing) for a lightweight component."""
        if spec.python_env is None:
            return self.image_id(spec.image)
        return self._env_image(spec, log).image_id

    def _env_image(self, spec: LaunchSpec, log: Optional[LogSink]) -> images.EnvImage:
        """The derived image of a lightweight component (built when missing), once per run.
        Without LOG (the fingerprint has none), a build's output is held for the next call
        with one (prepare())."""
        base_id = self.image_id(spec.image)
        env_key = (base_id, spec.python_env.key())
        with self._lock:
            held = self._held_logs.pop(env_key, []) if log else []
            found = self._env_images.get(env_key)
        for line in held:
            log(line)
        if found is not None:
            return found

        def hold(line: str) -> None:
            with self._lock:
                self._held_logs.setdefault(env_key, []).append(line)
        built = images.ensure_env_image(self.client, base_id, spec.python_env, log or hold,
                                        pip=self._pip, lock_dir=self._env_lock_dir,
                                        container_labels=self._labels('build', spec.task))
        with self._lock:
            self._env_images[env_key] = built
        return built

    # ------------------------------------------------------------ containers

    def _cpu_count(self) -> int:
        if self._ncpu is None:
            self._ncpu = int(self.client.info().get('NCPU') or os.cpu_count() or 1)
        return self._ncpu

    def container_config(self, spec: LaunchSpec, image_id: str) -> dict:
        """Keyword arguments for containers.create() (pure: no engine calls but NCPU)."""
        docker = _docker()
        if not spec.argv:
            raise LaunchError(f'task {spec.task}: empty command', retryable=False)
        # workdir writable; mounts at the same path; read-only wins over a duplicate rw
        # (an input must never be writable: it may alias a cache object).
        wanted: dict[str, tuple[str, bool]] = {}
        for mount in spec.mounts:
            if os.path.abspath(mount.path) == os.path.abspath(spec.workdir):
                continue
            read_only = mount.read_only or wanted.get(mount.path, ('', False))[1]
            wanted[mount.path] = (mount.path, read_only)
        for source, target in spec.volumes.items():
            # secrets and config maps read-only, as a cluster mounts them; PVCs, empty dirs, /tmp writable
            wanted[target] = (source, target in spec.read_only_volumes)
        wanted[spec.workdir] = (spec.workdir, False)
        for source, _ in wanted.values():
            if not os.path.exists(source):
                raise LaunchError(f'task {spec.task}: {source} (to mount in the container) does '
                                  'not exist', retryable=False)
        mounts = [docker.types.Mount(target, source, type='bind', read_only=ro)
                  for target, (source, ro) in sorted(wanted.items())]
        res = spec.resources
        if res.accelerator_count and len(res.gpu_ids) != res.accelerator_count:
            raise LaunchError(f'task {spec.task} asks for {res.accelerator_count} GPUs but was '
                              f'given ids {list(res.gpu_ids)}', retryable=False)
        labels = {**spec.labels, **self._labels('task', spec.task)}
        config = dict(
            image=image_id,
            # Kubernetes semantics: the component's command replaces the image's ENTRYPOINT.
            entrypoint=[spec.argv[0]], command=list(spec.argv[1:]),
            environment=dict(spec.env), working_dir=spec.workdir, mounts=mounts,
            network_mode='host', labels=labels, detach=True,
            init=True,  # tini as PID 1: SIGTERM reaches the task, zombies get reaped
            name=f"lr-{re.sub(r'[^a-zA-Z0-9_.-]+', '-', spec.task)[:40].strip('-.')}-"
                 f'{uuid.uuid4().hex[:8]}')
        if self._user == 'host' and os.getuid() != 0:
            config['user'] = f'{os.getuid()}:{os.getgid()}'
        elif self._user not in (None, 'host'):
            config['user'] = self._user
        if res.cpu_limit:
            # a cluster-sized limit must not stop a local run: clamp to this machine's CPUs
            config['nano_cpus'] = int(min(res.cpu_limit, self._cpu_count()) * 1e9)
        if res.memory_limit:
            config['mem_limit'] = int(res.memory_limit)
        if res.gpu_ids:
            config['device_requests'] = [docker.types.DeviceRequest(
                device_ids=list(res.gpu_ids), capabilities=[['gpu']])]
        return config

    def create_container(self, spec: LaunchSpec, log: Optional[LogSink] = None):
        """Creates (does not start) the attempt's container."""
        docker = _docker()
        config = self.container_config(spec, self.run_image(spec, log))
        try:
            self._make_mount_points(config['mounts'])
        except PathEscape as exc:
            raise LaunchError(f'task {spec.task}: {exc}', retryable=False) from None
        self._state.created_any = True
        try:
            return self.client.containers.create(**config)
        except docker.errors.APIError as exc:
            raise LaunchError(f'cannot create a container for task {spec.task}: {exc}',
                              retryable=exc.is_server_error()) from exc

    def _make_mount_points(self, mounts: list) -> None:
        """A writable folder under the run root mounted at T (the task's /tmp, an empty dir)
        holds the mount points of the mounts nested below T (its out folder, when the root
        is under /tmp). Made here, as this user: the daemon would make them as root, and
        leave folders in the root that the user cannot remove."""
        root = os.path.realpath(self.options.root)
        for outer in mounts:
            source = outer['Source']
            if outer['ReadOnly'] or not os.path.isdir(source) or not is_inside(os.path.realpath(source), root):
                continue
            for inner in mounts:
                rel = os.path.relpath(inner['Target'], outer['Target'])
                if inner is outer or rel == os.pardir or rel.startswith(os.pardir + os.sep):
                    continue
                # within(): a link a task left in the folder is not followed out of it
                point = within(source, *rel.split(os.sep), what='mount point')
                if os.path.isdir(inner['Source']):
                    os.makedirs(point, exist_ok=True)
                elif not os.path.lexists(point):
                    os.makedirs(os.path.dirname(point), exist_ok=True)
                    with contextlib.suppress(FileExistsError):      # never through a link
                        os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))

    def launch(self, spec: LaunchSpec, on_line: LineSink) -> 'DockerExecution':
        docker = _docker()
        container = self.create_container(spec, on_line)
        execution = DockerExecution(self, container, spec, on_line)
        try:
            container.start()
        except BaseException as exc:  # incl. KeyboardInterrupt: never leave it behind
            execution._remove()
            if isinstance(exc, docker.errors.APIError):
                raise _start_error(spec, exc) from exc
            raise
        with self._lock:
            self._live.add(execution)
        execution._follow_logs()
        return execution

    def _labels(self, role: str, task: str) -> dict[str, str]:
        return {MANAGED_LABEL: 'true', RUN_LABEL: self.run_id, TASK_LABEL: task, ROLE_LABEL: role,
                **runner_labels()}

    def cancel(self) -> None:
        """Removes this run's environment build containers: the build fails at once."""
        if self._state.client is None:
            return
        with contextlib.suppress(Exception):
            _remove_labelled(self._state.client, [f'{RUN_LABEL}={self.run_id}', f'{ROLE_LABEL}=build'])

    def cleanup(self) -> None:
        """Terminates live attempts and removes every container labelled with this run."""
        with self._lock:
            live = list(self._live)
        for execution in live:
            execution.terminate()
        _sweep(self._state)

    def close(self) -> None:
        self.cleanup()
        self._finalizer.detach()
        if self._state.client is not None:
            with contextlib.suppress(Exception):
                self._state.client.close()
            self._state.client = None


def _start_error(spec: LaunchSpec, exc) -> LaunchError:
    text = str(exc)
    if spec.resources.gpu_ids and ('device driver' in text or 'nvidia' in text.lower()):
        return LaunchError(f'task {spec.task} needs GPUs {",".join(spec.resources.gpu_ids)} but '
                           f'the Docker engine has no GPU runtime (install the NVIDIA Container '
                           f'Toolkit): {text}', retryable=False)
    return LaunchError(f'cannot start the container of task {spec.task}: {text}',
                       retryable=exc.is_server_error() and 'OCI runtime' not in text)


class DockerExecution(Execution):
    def __init__(self, backend: DockerBackend, container, spec: LaunchSpec, on_line: LineSink):
        self._backend = backend
        self.container = container
        self.container_id: str = container.id
        self._spec = spec
        self._on_line = on_line
        self._lock = threading.Lock()
        self._remove_lock = threading.Lock()
        self._terminated = False
        self._removed = False
        self._status: Optional[int] = None   # exit status seen by terminate()
        self._exit: Optional[int] = None     # what wait() returned
        self._pump: Optional[threading.Thread] = None

    def _follow_logs(self) -> None:
        self._pump = threading.Thread(target=self._pump_logs, daemon=True,
                                      name=f'logs {self._spec.task}')
        self._pump.start()

    def _pump_logs(self) -> None:
        # the host-only log (layout.open_log: never through a link); the container has no
        # access to it, it only produces the stream
        with open_log(self._spec.log_path) as fh:
            # follow=True replays from the container's start, so no early line is lost
            with contextlib.suppress(Exception):  # the stream ends when terminate() removes it
                for line in images.iter_lines(self.container.logs(stream=True, follow=True)):
                    fh.write((line + '\n').encode('utf-8', errors='replace'))
                    fh.flush()
                    with contextlib.suppress(Exception):  # a broken sink must not stop logging
                        self._on_line(line)

    def wait(self) -> int:
        docker = _docker()
        if self._exit is not None:
            return self._exit
        try:
            try:
                result = self.container.wait()
                status = int(result.get('StatusCode', -1))
                if status == 0 and (result.get('Error') or {}).get('Message'):
                    status = -1   # the engine failed to wait on it: never report success
            except docker.errors.NotFound:   # terminate() removed it first
                status = self._status if self._status is not None else _KILLED
            if self._pump is not None:
                self._pump.join(timeout=30)
        except BaseException:  # KeyboardInterrupt (or anything) while waiting: clean up
            self.terminate()
            raise
        self._remove()
        self._exit = status
        return status

    def terminate(self) -> None:
        docker = _docker()
        with self._lock:
            if self._terminated:
                return
            self._terminated = True
        with contextlib.suppress(docker.errors.APIError):
            self.container.stop(timeout=max(0, int(self._backend.stop_grace)))  # TERM, then KILL
            self.container.reload()
            self._status = int(self.container.attrs['State']['ExitCode'])
        self._remove()

    def kill(self) -> None:
        """SIGKILL now (a concurrent terminate()'s stop returns as the container dies)."""
        docker = _docker()
        with self._lock:
            self._terminated = True
        with contextlib.suppress(docker.errors.APIError):
            self.container.kill()
        self._remove()

    def _remove(self) -> None:
        docker = _docker()
        with self._remove_lock:   # wait() and terminate() may both get here
            if self._removed:
                return
            # A remove racing a stop gets 409 "removal in progress / is stopping": retry it,
            # or the container outlives the attempt.
            for attempt in range(50):
                try:
                    self.container.remove(force=True)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    if attempt == 49:
                        break   # close() sweeps by label as a last resort
                    time.sleep(0.1)
            self._removed = True
        with self._backend._lock:
            self._backend._live.discard(self)
