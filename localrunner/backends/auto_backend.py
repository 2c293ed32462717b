"""`--backend auto`: each task where it runs faithfully. A task that needs its image
(LaunchSpec.needs_image, decided by engine/placement.py) runs in Docker when an engine
answers; every other task runs on this machine (subprocess backend), which is faster.
Without a Docker engine everything runs on this machine, and the engine says which tasks
needed their image when the run is planned."""
from __future__ import annotations

from typing import Optional

from localrunner.backends.base import (Backend, BackendOptions, Capabilities, Execution, LaunchError, LaunchSpec,
                                       LineSink, LogSink)
from localrunner.backends.docker_backend import DockerBackend
from localrunner.backends.subprocess_backend import SubprocessBackend


class AutoBackend(Backend):
    name = 'auto'

    def __init__(self, options: Optional[BackendOptions] = None, *, docker_client=None):
        super().__init__(options)
        self.host = SubprocessBackend(self.options)
        self._docker_client = docker_client
        self._docker: Optional[DockerBackend] = None
        self._docker_checked = False
        self.docker_error: Optional[str] = None

    @property
    def docker(self) -> Optional[DockerBackend]:
        """The Docker backend, or None when no engine answers (asked once)."""
        if not self._docker_checked:
            self._docker_checked = True
            backend = DockerBackend(self.options, client=self._docker_client)
            try:
                backend.check()
                self._docker = backend
            except LaunchError as e:
                self.docker_error = str(e)
                backend.close()
        return self._docker

    @property
    def capabilities(self) -> Capabilities:          # type: ignore[override]
        return Capabilities(containers=self.docker is not None, volumes=self.docker is not None,
                            local_gpus=True)

    def _for(self, spec: LaunchSpec) -> Backend:
        if spec.needs_image and self.docker is not None:
            return self.docker
        return self.host

    def capabilities_for(self, spec: LaunchSpec) -> Capabilities:
        return self._for(spec).capabilities

    def environment_fingerprint(self, spec: LaunchSpec, log: Optional[LogSink] = None,
                                build: bool = True) -> Optional[str]:
        return self._for(spec).environment_fingerprint(spec, log, build)

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        self._for(spec).prepare(spec, log)

    def launch(self, spec: LaunchSpec, on_line: LineSink) -> Execution:
        return self._for(spec).launch(spec, on_line)

    def cancel(self) -> None:
        self.host.cancel()
        if self._docker is not None:
            self._docker.cancel()

    def close(self) -> None:
        self.host.close()
        if self._docker is not None:
            self._docker.close()
