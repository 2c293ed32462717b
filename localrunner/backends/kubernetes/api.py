"""ClusterApi: the whole conversation with a cluster behind four calls (and a reachability
check made once, before the first pod).

The backend never touches the `kubernetes` client itself, so it can be driven end to end by
another implementation (tests run pods in Docker) and KubeClusterApi stays small enough to
check by reading against a real cluster.

find_cluster_config() reads the kubeconfig the way kubectl does, without the network and
without running credential plugins, so a broken file is reported (file and reason, one line)
before a run starts, while the cluster itself is first contacted when a task must run.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import re
import time
from typing import Iterator, Mapping, Optional

MAIN_CONTAINER = 'main'
DEFAULT_KUBECONFIG = '~/.kube/config'
# what a pod's service account gets mounted (k8s.io/client-go/rest/config.go InClusterConfig)
SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'


class ClusterConfigError(Exception):
    """The cluster configuration cannot be used; the message names the file and the reason."""


class ClusterUnreachable(Exception):
    """The API server did not answer (or refused our credentials)."""


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

    def check_reachable(self) -> None:
        """Raises ClusterUnreachable when the API server cannot be used; called once, before
        the first pod of a run (a run served from the cache never calls it)."""

    def close(self) -> None:
        """Releases connections."""


def _one_line(text: object) -> str:
    return ' '.join(str(text).split())


@dataclasses.dataclass
class ClusterConfig:
    """Where the cluster configuration comes from, read without contacting anything."""
    files: list[str]                 # the kubeconfig files merged (empty: in-cluster)
    context: str = ''
    server: str = ''

    def describe(self) -> str:
        if not self.files:
            return 'in-cluster service account'
        return f'kubeconfig {os.pathsep.join(self.files)}, context {self.context!r}'

    def load(self, configuration) -> None:
        """Fills a kubernetes.client.Configuration; this may run the kubeconfig's credential
        plugin (exec / auth-provider). Raises ClusterConfigError naming the file."""
        from kubernetes import config
        try:
            if self.files:
                config.load_kube_config(config_file=os.pathsep.join(self.files), context=self.context,
                                        client_configuration=configuration)
            else:
                config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:   # ConfigException, a failing exec plugin, a missing cert file...
            raise ClusterConfigError(f'{self.describe()}: {_one_line(exc)}') from None


def _kubeconfig_paths(environ: Mapping[str, str]) -> tuple[list[str], bool]:
    """The kubeconfig files kubectl would read, and whether KUBECONFIG named them."""
    listed = environ.get('KUBECONFIG', '')
    if listed.strip():
        return [os.path.abspath(os.path.expanduser(p)) for p in listed.split(os.pathsep) if p], True
    home = environ.get('HOME')
    default = os.path.join(home, '.kube', 'config') if home else os.path.expanduser(DEFAULT_KUBECONFIG)
    return [os.path.abspath(default)], False


def _read_kubeconfig(path: str) -> dict:
    import yaml
    if os.path.isdir(path):
        raise ClusterConfigError(f'kubeconfig {path}: is a directory, not a file')
    try:
        with open(path, encoding='utf-8') as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _one_line(exc)
        raise ClusterConfigError(f'kubeconfig {path}: cannot read it: {reason}') from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' at line {mark.line + 1} column {mark.column + 1}' if mark else ''
        problem = getattr(exc, 'problem', None) or exc
        raise ClusterConfigError(f'kubeconfig {path}: malformed YAML{where}: {_one_line(problem)}') from None
    if data is None:
        raise ClusterConfigError(f'kubeconfig {path}: is empty')
    if not isinstance(data, dict):
        raise ClusterConfigError(f'kubeconfig {path}: not a kubeconfig (expected a mapping with '
                                 f'clusters, contexts, users)')
    for key in ('clusters', 'contexts', 'users'):
        items = data.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get('name') for i in items):
            raise ClusterConfigError(f'kubeconfig {path}: {key} must be a list of entries with a name')
    return data


def find_cluster_config(context: Optional[str] = None,
                        environ: Mapping[str, str] = os.environ) -> ClusterConfig:
    """The kubeconfig (KUBECONFIG, a list, else ~/.kube/config) and context a run would use,
    else the in-cluster service account. Reads files only. Raises ClusterConfigError with one
    line naming the file and the reason: missing, unreadable, malformed, no current context,
    unknown context or cluster."""
    paths, from_env = _kubeconfig_paths(environ)
    existing = [p for p in paths if os.path.exists(p)]
    if not existing:
        if from_env:
            raise ClusterConfigError(f'KUBECONFIG names {os.pathsep.join(paths)}: no such file')
        if environ.get('KUBERNETES_SERVICE_HOST') and os.path.exists(SERVICE_ACCOUNT_TOKEN):
            return ClusterConfig(files=[], server=f"https://{environ['KUBERNETES_SERVICE_HOST']}:"
                                                  f"{environ.get('KUBERNETES_SERVICE_PORT', '443')}")
        raise ClusterConfigError(f'no kubeconfig: {paths[0]} does not exist and KUBECONFIG is not set '
                                 f'(nor is this a pod with a service account)')
    # Merged as kubectl merges a KUBECONFIG list: the first file to name an entry or to set
    # current-context wins (k8s.io/client-go/tools/clientcmd/loader.go, ClientConfigLoadingRules.Load).
    entries: dict[str, dict[str, tuple[dict, str]]] = {'contexts': {}, 'clusters': {}, 'users': {}}
    current = ''
    for path in existing:
        data = _read_kubeconfig(path)
        for key, found in entries.items():     # entry name -> (entry, the file that defines it)
            for item in data.get(key) or []:
                found.setdefault(str(item['name']), (item.get(key[:-1]) or {}, path))
        current = current or str(data.get('current-context') or '')
    contexts = {name: entry for name, (entry, _) in entries['contexts'].items()}
    where = f'kubeconfig {os.pathsep.join(existing)}'
    known = ', '.join(sorted(contexts)) or '(none)'
    chosen = context or current
    if not chosen:
        raise ClusterConfigError(f'{where}: no current-context is set; choose one with '
                                 f'LOCALRUNNER_K8S_CONTEXT (contexts: {known})')
    if chosen not in contexts:
        source = 'the context asked for' if context else 'its current-context'
        raise ClusterConfigError(f'{where}: {source} {chosen!r} is not defined (contexts: {known})')
    cluster_name = str(contexts[chosen].get('cluster') or '')
    if cluster_name not in entries['clusters']:
        raise ClusterConfigError(f'{where}: context {chosen!r} names cluster {cluster_name!r}, '
                                 f'which is not defined')
    cluster, defined_in = entries['clusters'][cluster_name]
    server = str(cluster.get('server') or '')
    if not server:
        raise ClusterConfigError(f'{where}: cluster {cluster_name!r} has no server address')
    _check_files('cluster', cluster_name, cluster, defined_in, ('certificate-authority',))
    user_name = str(contexts[chosen].get('user') or '')
    if user_name in entries['users']:
        user, defined_in = entries['users'][user_name]
        _check_files('user', user_name, user, defined_in, ('client-certificate', 'client-key', 'tokenFile'))
    return ClusterConfig(files=existing, context=chosen, server=server)


def _check_files(kind: str, name: str, entry: dict, defined_in: str, keys: tuple[str, ...]) -> None:
    """Certificates and token files a kubeconfig entry names must exist (a relative path is
    relative to the file that names it, as client-go resolves it)."""
    for key in keys:
        value = entry.get(key)
        if not value:
            continue
        path = os.path.join(os.path.dirname(defined_in), os.path.expanduser(str(value)))
        if not os.path.isfile(path):
            raise ClusterConfigError(f'kubeconfig {defined_in}: {kind} {name!r} names {key} {path}, '
                                     f'which does not exist')


def _connection_reason(exc: Exception) -> str:
    """'Connection refused' rather than urllib3's nested repr of it."""
    reason = getattr(exc, 'reason', None) or exc
    text = _one_line(reason)
    text = re.sub(r'<[^<>]* object at 0x[0-9a-f]+>:?\s*', '', text)
    return text[:300]


class KubeClusterApi(ClusterApi):
    """The official client, one namespace. Config: kubeconfig (context optional), else the
    in-cluster service account."""

    def __init__(self, namespace: str = 'default', context: Optional[str] = None,
                 grace_seconds: int = 5, configuration=None,
                 cluster_config: Optional[ClusterConfig] = None):
        """configuration: a kubernetes.client.Configuration to use instead of loading one;
        cluster_config: what find_cluster_config() found (found again when not given).
        Raises ClusterConfigError naming the kubeconfig and the reason."""
        from kubernetes import client  # optional extra: imported only when used
        if configuration is None:
            cluster_config = cluster_config or find_cluster_config(context)
            configuration = client.Configuration()
            cluster_config.load(configuration)
        self.where = cluster_config.describe() if cluster_config else 'the given configuration'
        self.host = configuration.host
        self._api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self._api_client)
        self.namespace = namespace
        self.grace_seconds = grace_seconds

    def check_reachable(self) -> None:
        # GET /version: answered to any client (the system:public-info-viewer role), so it
        # tests the address, TLS and our credentials without needing any permission.
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        try:
            client.VersionApi(self._api_client).get_code(_request_timeout=15)
        except ApiException as exc:
            if exc.status == 401:
                raise ClusterUnreachable(f'the cluster API at {self.host} ({self.where}) refused '
                                         f'our credentials: 401 {exc.reason}') from None
            return     # any other answer: the server is there (pods may still be allowed)
        except Exception as exc:
            raise ClusterUnreachable(f'cannot reach the cluster API at {self.host} ({self.where}): '
                                     f'{_connection_reason(exc)}') from None

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
