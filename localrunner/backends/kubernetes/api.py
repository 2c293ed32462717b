"""ClusterApi: the whole conversation with a cluster behind four calls.

The backend never touches the `kubernetes` client itself, so it can be driven end to end by
another implementation (tests run pods in Docker) and KubeClusterApi stays small enough to
check by reading against a real cluster.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import time
from typing import Iterator, Optional

MAIN_CONTAINER = 'main'


@dataclasses.dataclass
class PodStatus:
    phase: str                          # Pending, Running, Succeeded, Failed, Unknown, Gone
    exit_code: Optional[int] = None     # the main container's, once it terminated
    reason: str = ''                    # why it is waiting / failed (ErrImagePull, Init:Error...)
    image_id: str = ''                  # what the cluster ran (imageID), when it says

    @property
    def done(self) -> bool:
        return self.phase in ('Succeeded', 'Failed', 'Gone')


class ClusterApi(abc.ABC):
    @abc.abstractmethod
    def create_pod(self, manifest: dict) -> None:
        """Creates the pod; raises on refusal (quota, invalid spec, no permission)."""

    @abc.abstractmethod
    def pod_phase(self, name: str) -> PodStatus:
        """The pod's phase; phase 'Gone' when it no longer exists."""

    @abc.abstractmethod
    def stream_logs(self, name: str) -> Iterator[str]:
        """Lines of the main container's output from its start; ends when it exits.
        Called once the pod has left Pending."""

    @abc.abstractmethod
    def delete_pod(self, name: str) -> None:
        """Deletes the pod (idempotent: a missing pod is not an error)."""

    def close(self) -> None:
        """Releases connections."""


class KubeClusterApi(ClusterApi):
    """The official client, one namespace. Config: kubeconfig (context optional), else the
    in-cluster service account."""

    def __init__(self, namespace: str = 'default', context: Optional[str] = None,
                 grace_seconds: int = 5, configuration=None):
        """configuration: a kubernetes.client.Configuration to use instead of loading one."""
        from kubernetes import client, config  # optional extra: imported only when used
        if configuration is None:
            configuration = client.Configuration()
            try:
                config.load_kube_config(context=context, client_configuration=configuration)
            except Exception:
                config.load_incluster_config(client_configuration=configuration)
        self._api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self._api_client)
        self.namespace = namespace
        self.grace_seconds = grace_seconds

    def create_pod(self, manifest: dict) -> None:
        self.core.create_namespaced_pod(self.namespace, manifest)

    def pod_phase(self, name: str) -> PodStatus:
        from kubernetes.client.exceptions import ApiException
        try:
            pod = self.core.read_namespaced_pod_status(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return PodStatus('Gone', reason='pod not found')
            raise
        return status_of(pod)

    def stream_logs(self, name: str) -> Iterator[str]:
        from kubernetes.client.exceptions import ApiException
        # The API answers 400 while the container is still being created: retry briefly.
        for _ in range(30):
            try:
                resp = self.core.read_namespaced_pod_log(
                    name, self.namespace, container=MAIN_CONTAINER, follow=True,
                    _preload_content=False)
                break
            except ApiException as exc:
                if exc.status not in (400, 404) or self.pod_phase(name).done:
                    raise
                time.sleep(1)
        else:
            return
        pending = b''
        try:
            for chunk in resp.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b'\n')
                for line in lines:
                    yield line.decode('utf-8', 'replace').rstrip('\r')
            if pending:
                yield pending.decode('utf-8', 'replace')
        finally:
            with contextlib.suppress(Exception):
                resp.release_conn()

    def delete_pod(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.core.delete_namespaced_pod(name, self.namespace,
                                            grace_period_seconds=self.grace_seconds)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api_client.close()


def status_of(pod) -> PodStatus:
    """PodStatus from a V1Pod: the main container's exit code, the first telling reason."""
    st = pod.status
    phase = st.phase or 'Unknown'
    reason = st.reason or ''
    exit_code, image_id = None, ''
    for cs in st.init_container_statuses or []:
        term = cs.state and cs.state.terminated
        if term and term.exit_code:
            return PodStatus('Failed', term.exit_code, f'init container {cs.name}: '
                             f'{term.reason or "Error"}')
        waiting = cs.state and cs.state.waiting
        if waiting and waiting.reason and waiting.reason != 'PodInitializing':
            reason = f'init container {cs.name}: {waiting.reason} {waiting.message or ""}'.strip()
    for cs in st.container_statuses or []:
        if cs.name != MAIN_CONTAINER:
            continue
        image_id = cs.image_id or ''
        term = cs.state and cs.state.terminated
        waiting = cs.state and cs.state.waiting
        if term:
            exit_code = term.exit_code
            reason = term.reason or reason
        elif waiting and waiting.reason:
            reason = f'{waiting.reason} {waiting.message or ""}'.strip()
    return PodStatus(phase, exit_code, reason, image_id)
