"""The contract between the engine and a backend: how one task attempt is started.

A backend knows how to start a process somewhere (this machine, a container, a pod) and
nothing of KFP. The engine hands it a fully resolved LaunchSpec (placeholders substituted,
executor input written) and gets back an exit status. Paths in a LaunchSpec are host paths;
a backend that runs elsewhere makes them visible at the same path (Docker bind mounts) or
stages them (Kubernetes), so artifact URIs mean the same thing on every backend.

A backend is:
- registered only through the `localrunner.backends` entry point (backends/registry.py);
- constructed with ONE BackendOptions (plus, for tests, injected clients as keywords);
- described by its Capabilities: the engine asks what a backend can do, never its name.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Optional

from localrunner.environments.python_env import PythonEnv
from localrunner.errors import LaunchError, UsageError
from localrunner.units import parse_duration

__all__ = ['Backend', 'BackendOptions', 'Capabilities', 'Execution', 'LaunchError', 'LaunchSpec', 'LineSink',
           'LogSink', 'Mount', 'Resources', 'unread_lines']


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend does with a task; the engine decides by these, never by a name."""
    containers: bool = False    # runs the component's image (a container command inside it)
    volumes: bool = False       # kfp-kubernetes volumes (secrets, config maps, PVCs, empty dirs) reach the task
    isolated: bool = False      # the task sees only its mounts: outputs are read only from its out folder
    remote: bool = False        # runs elsewhere: the cluster schedules cpu/memory/GPUs and applies
                                # kfp-kubernetes settings itself; nothing of this machine is accounted
    local_gpus: bool = False    # hands a task exact GPU ids of this machine


@dataclasses.dataclass
class BackendOptions:
    """Everything the engine gives a backend when a run is assembled."""
    run_id: str = ''
    root: str = '.localrunner'                  # the run root (layout.RootLayout)
    env_dir: Optional[str] = None               # shared environments (venvs); None: the user cache
    cwd: Optional[str] = None                   # working folder of host processes; None: the current one
    warm_start: bool = True                     # lightweight components from a warm process where supported
    settings: dict = dataclasses.field(default_factory=dict)   # backend-specific, documented by each backend

    def seconds(self, name: str, default: float) -> float:
        """A duration setting (5, '5s', '1m'); UsageError naming it when it is not one."""
        value = self.settings.get(name, default)
        try:
            return parse_duration(value)
        except ValueError:
            raise UsageError(f'backend setting {name}: {value!r} is not a duration (e.g. 5, 5s, 1m)') from None


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host path the task needs, visible at the same path inside a container."""
    path: str
    read_only: bool = True


@dataclasses.dataclass
class Resources:
    cpu_limit: Optional[float] = None          # cores
    memory_limit: Optional[int] = None         # bytes
    cpu_request: Optional[float] = None
    memory_request: Optional[int] = None
    accelerator_type: Optional[str] = None
    accelerator_count: int = 0
    gpu_ids: tuple[str, ...] = ()              # assigned by the scheduler, never part of a cache key


@dataclasses.dataclass
class LaunchSpec:
    task: str                                  # '/'-joined task path, for names and logs
    image: str                                 # the component's image (ignored by subprocess)
    argv: list[str]                            # resolved command + args
    env: dict[str, str]                        # the component's env (not the host's)
    workdir: str                               # this attempt's folder (host path), writable
    log_path: str                              # combined stdout+stderr of this attempt
    python_env: Optional[PythonEnv] = None     # set when KFP's pip prologue was lifted off argv
    mounts: list[Mount] = dataclasses.field(default_factory=list)
    resources: Resources = dataclasses.field(default_factory=Resources)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    volumes: dict[str, str] = dataclasses.field(default_factory=dict)   # host dir -> path in task (PVCs, secrets)
    read_only_volumes: set[str] = dataclasses.field(default_factory=set)  # paths in task of read-only volumes (secrets)
    platform: dict = dataclasses.field(default_factory=dict)  # the IR's kfp-kubernetes settings for this executor
    needs_image: Optional[str] = None          # why the task runs faithfully only in its image (engine/placement.py)


class Execution(abc.ABC):
    """A started attempt."""

    @abc.abstractmethod
    def wait(self) -> int:
        """Blocks until the attempt ends; returns its exit status. Output goes to
        spec.log_path and, line by line, to the on_line callback given to launch()."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """Stops the attempt: SIGTERM to all of it (the task's whole process group, or its
        container), SIGKILL after the backend's grace period; then cleans up whatever the
        backend created for it (processes, containers). Idempotent, callable from any thread;
        may block for the grace period. wait() returns once the attempt is gone."""

    def kill(self) -> None:
        """Stops the attempt at once (SIGKILL, no grace): a second Ctrl-C. Same contract as
        terminate() otherwise; callable while a terminate() is waiting out its grace."""
        self.terminate()


LineSink = Callable[[str], None]
LogSink = Callable[[str], None]


def unread_lines(line: str) -> None:
    """The on_line the engine gives launch() when no subscriber reads a task's lines (a run
    without --verbose): the log file alone gets the output. A backend may test for it (`is`)
    to skip splitting the output into lines; calling it does nothing."""


class Backend(abc.ABC):
    name: str = 'base'
    capabilities: Capabilities = Capabilities()

    def __init__(self, options: Optional[BackendOptions] = None):
        self.options = options or BackendOptions()

    def capabilities_for(self, spec: 'LaunchSpec') -> Capabilities:
        """What this task gets (a backend that routes tasks, like auto, answers per task)."""
        return self.capabilities

    @abc.abstractmethod
    def environment_fingerprint(self, spec: LaunchSpec, log: Optional[LogSink] = None,
                                build: bool = True) -> Optional[str]:
        """An immutable identity of what the task will run in (image id; interpreter, platform
        and the packages really installed — never a host path). Enters the cache key. An
        environment that doesn't exist yet is built first (its output to `log`): what it
        resolves to decides the key. With build=False (a dry run), None instead of a build."""

    def check(self) -> None:
        """Verifies, before a run starts, that the backend can work at all (an engine that
        answers, the configuration it needs). Raises LaunchError naming what is missing."""

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        """Builds what the attempt needs (venv, derived image) once; later calls are cheap.
        Raises LaunchError when that cannot be done."""

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec, on_line: LineSink) -> Execution:
        """Starts the attempt. Raises LaunchError when it cannot be started."""

    def cancel(self) -> None:
        """The run is canceled: stop what prepare() is doing for it now (environment builds:
        installer processes, build containers), so a waiting task ends promptly. Running
        executions are not this call's business: the engine terminates each. Callable from
        any thread, more than once; must not block for long."""

    def close(self) -> None:
        """Releases what the backend holds (clients, pools) and removes whatever of the
        run is still there (processes, containers)."""
