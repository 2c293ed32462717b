"""KubernetesBackend: one Pod per task attempt on a cluster.

launch(): stage the task's files into the bucket (staging.py), create the Pod (pod_spec.py)
through a ClusterApi (api.py). wait(): follow the main container's log into spec.log_path,
poll the phase, unpack the outputs the pod uploaded into the host paths the engine reads,
delete the pod and the staged objects, return the task's exit status.

Configuration (constructor arguments win over the environment):
  LOCALRUNNER_K8S_NAMESPACE (default 'default'), LOCALRUNNER_K8S_CONTEXT,
  LOCALRUNNER_S3_ENDPOINT / _BUCKET / _ACCESS_KEY / _SECRET_KEY (or AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY) / _SECURE / _POD_ENDPOINT / _REGION, LOCALRUNNER_K8S_STAGE_IMAGE.
Before a run (check()): the configuration is read -- the S3 settings and the kubeconfig file
and context (api.find_cluster_config) -- with no network call and no credential plugin run.
Before the first pod (prepare()): the bucket and the API server are contacted, once. A run
served from the cache therefore never needs the cluster or the bucket to answer, and a dry
run (which launches nothing) does not call check() at all.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
import time
import uuid
from typing import Optional, Union

from localrunner.backends.base import (Backend, BackendOptions, Capabilities, Execution, LaunchError, LaunchSpec,
                                       LineSink, LogSink)
from localrunner.backends.kubernetes import pod_spec
from localrunner.backends.kubernetes.api import (ClusterApi, ClusterConfig, ClusterConfigError,
                                                 ClusterUnreachable, PodStatus, find_cluster_config)
from localrunner.backends.kubernetes.staging import S3Settings, Stager

POD_FAILED = 125      # the pod failed without a task exit status (eviction, deadline, image)
KILLED = 137          # the pod was deleted under us (terminate(), kubectl delete)
# Pending with one of these reasons will not get better by itself
_HOPELESS = ('ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'CreateContainerConfigError',
             'CreateContainerError')


def _client_installed() -> bool:
    """Whether the official client can be imported, without importing it (~1 s)."""
    try:
        return importlib.util.find_spec('kubernetes') is not None
    except (ImportError, ValueError):      # ValueError: sys.modules['kubernetes'] is None
        return False


def _client_error(exc: Exception) -> bool:
    status = getattr(exc, 'status', None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (409, 429)


class KubernetesBackend(Backend):
    name = 'kubernetes'
    # runs elsewhere: this machine's GPUs and CPUs are not what it uses; pods see only their volumes
    capabilities = Capabilities(containers=True, volumes=True, isolated=True, remote=True)

    def __init__(self, options: Optional[BackendOptions] = None, *, api: Optional[ClusterApi] = None,
                 s3: Union[S3Settings, dict, None] = None, namespace: Optional[str] = None,
                 context: Optional[str] = None, run_id: Optional[str] = None,
                 stage_image: Optional[str] = None, poll_s: float = 1.0,
                 hopeless_grace_s: float = 60.0, keep_staging: bool = False,
                 digest_file: Union[str, bool, None] = None):
        """options.settings may hold any of the keywords (namespace, context, stage_image,
        poll_s, ...); api and s3 are injected by tests. digest_file: where image tag -> digest
        (as the cluster reported it) persists; None = the user cache folder, False = this
        process only."""
        super().__init__(options)
        settings = self.options.settings
        namespace = namespace or settings.get('namespace')
        context = context or settings.get('context')
        run_id = run_id or self.options.run_id or None
        s3 = s3 if s3 is not None else settings.get('s3')
        self._api = api
        self._s3 = s3
        self.namespace = namespace or os.environ.get('LOCALRUNNER_K8S_NAMESPACE') or 'default'
        self.context = context or os.environ.get('LOCALRUNNER_K8S_CONTEXT') or None
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.stage_image = stage_image or os.environ.get('LOCALRUNNER_K8S_STAGE_IMAGE') or None
        self.poll_s = poll_s
        self.hopeless_grace_s = hopeless_grace_s
        self.keep_staging = keep_staging
        self._stager: Optional[Stager] = None
        self._cluster_config: Optional[ClusterConfig] = None
        self._reachable: Optional[str] = None        # '' once the API server answered, else why not
        self._lock = threading.Lock()
        self._reach_lock = threading.Lock()
        self._live: set[KubernetesExecution] = set()
        if digest_file is None:
            from localrunner.user_cache import user_cache_path
            digest_file = user_cache_path('k8s-image-digests.json')
        self._digest_file = digest_file or None
        self._digests: dict[str, str] = self._load_digests()   # frozen for this backend's life
        self._seen: dict[str, str] = {}

    # ------------------------------------------------------------ configuration

    @property
    def cluster_config(self) -> ClusterConfig:
        """The kubeconfig file and context (or in-cluster account) to use; read, not contacted."""
        with self._lock:
            if self._cluster_config is None:
                try:
                    self._cluster_config = find_cluster_config(self.context)
                except ClusterConfigError as exc:
                    raise LaunchError(f'kubernetes backend: {exc}', retryable=False) from None
            return self._cluster_config

    @property
    def api(self) -> ClusterApi:
        if self._api is None:
            config = self.cluster_config
        with self._lock:
            if self._api is None:
                try:
                    from localrunner.backends.kubernetes.api import KubeClusterApi
                    self._api = KubeClusterApi(self.namespace, self.context, cluster_config=config)
                except ImportError as exc:
                    raise LaunchError(f'kubernetes backend: {exc} (pip install '
                                      'localrunner[kubernetes])', retryable=False) from None
                except ClusterConfigError as exc:    # e.g. the credential plugin failed
                    raise LaunchError(f'kubernetes backend: {exc}', retryable=False) from None
            return self._api

    @property
    def stager(self) -> Stager:
        with self._lock:
            if self._stager is None:
                s3 = self._s3
                if not isinstance(s3, S3Settings):
                    s3 = S3Settings.from_env(**(s3 or {}))
                self._stager = Stager(s3)
            return self._stager

    def check(self) -> None:
        """Configuration only: nothing is contacted, so a run served from the cache needs
        neither the cluster nor the bucket."""
        self.stager        # noqa: B018 - each raises LaunchError naming a missing setting / bad file
        if self._api is None:
            self.cluster_config    # noqa: B018
            if not _client_installed():
                raise LaunchError('kubernetes backend: the kubernetes package is not installed '
                                  '(pip install localrunner[kubernetes])', retryable=False)

    def check_cluster(self) -> None:
        """The API server answers: asked once per backend, before its first pod. The answer
        (either way) is kept, so an unreachable cluster fails each task at once, not after a
        timeout apiece."""
        api = self.api
        with self._reach_lock:
            if self._reachable is None:
                try:
                    api.check_reachable()
                    self._reachable = ''
                except ClusterUnreachable as exc:
                    self._reachable = f'kubernetes backend: {exc}'
            known = self._reachable
        if known:
            raise LaunchError(known, retryable=False)

    # ------------------------------------------------------------ image identity

    def environment_fingerprint(self, spec: LaunchSpec, log: Optional[LogSink] = None,
                                build: bool = True) -> Optional[str]:
        """The image reference -- or the digest the cluster reported running for it in an
        EARLIER run -- plus the python environment key. No cluster call. The digests are
        read once, when the backend is made, so every task of a run keys alike; a digest a
        pod reports is saved for the next run (a tag that moved then misses, as it should)."""
        image = self._digests.get(spec.image, spec.image)
        return f'{image}+{spec.python_env.key()}' if spec.python_env else image

    def remember_digest(self, ref: str, image_id: str) -> None:
        if not image_id or '@' in ref:
            return
        image_id = image_id.split('://', 1)[-1]      # docker-pullable://repo@sha256:...
        with self._lock:
            if self._seen.get(ref) == image_id:
                return
            self._seen[ref] = image_id
        if self._digest_file:
            with contextlib.suppress(OSError):
                data = {**self._load_digests(), ref: image_id}
                os.makedirs(os.path.dirname(self._digest_file), exist_ok=True)
                tmp = f'{self._digest_file}.{os.getpid()}.{threading.get_ident()}.tmp'
                with open(tmp, 'w') as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
                os.replace(tmp, self._digest_file)

    @property
    def reported_digests(self) -> dict[str, str]:
        """image ref -> what the cluster ran for it, seen by this backend."""
        with self._lock:
            return dict(self._seen)

    def _load_digests(self) -> dict[str, str]:
        if not self._digest_file:
            return {}
        try:
            with open(self._digest_file) as fh:
                data = json.load(fh)
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------ attempts

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        """Fails fast (once per task, before any attempt): missing configuration, a bucket or
        an API server that does not answer. Only a task that must run gets here."""
        self.stager.check_bucket()
        self.check_cluster()

    def pod_manifest(self, spec: LaunchSpec, name: str, staging: pod_spec.Staging) -> dict:
        """The Pod this backend creates for an attempt (`localrunner render` shows the same)."""
        manifest = pod_spec.build_pod(spec, name, staging, platform=spec.platform,
                                      stage_image=self.stage_image)
        manifest['metadata']['labels'].update({'localrunner.managed': 'true',
                                               'localrunner.backend-run': self.run_id})
        return manifest

    def launch(self, spec: LaunchSpec, on_line: LineSink) -> 'KubernetesExecution':
        stager, api = self.stager, self.api
        attempt = uuid.uuid4().hex[:10]
        name = pod_spec.pod_name(spec.task, attempt)
        prefix = stager.attempt_prefix(self.run_id, attempt)
        try:
            staging = stager.stage_in(spec, prefix)
            manifest = self.pod_manifest(spec, name, staging)
        except LaunchError:
            self._drop_staging(prefix)
            raise
        except ValueError as exc:
            self._drop_staging(prefix)
            raise LaunchError(f'task {spec.task}: {exc}', retryable=False) from None
        except Exception as exc:   # the object store failed us
            self._drop_staging(prefix)
            raise LaunchError(f'task {spec.task}: staging inputs failed: {exc}',
                              retryable=True) from exc
        try:
            api.create_pod(manifest)
        except Exception as exc:
            self._drop_staging(prefix)
            raise LaunchError(f'task {spec.task}: the cluster refused pod {name}: {exc}',
                              retryable=not _client_error(exc)) from exc
        execution = KubernetesExecution(self, spec, name, prefix, staging, on_line)
        with self._lock:
            self._live.add(execution)
        execution.follow_logs()
        return execution

    def _drop_staging(self, prefix: str) -> None:
        if not self.keep_staging and self._stager is not None:
            with contextlib.suppress(Exception):
                self._stager.cleanup(prefix)

    def close(self) -> None:
        with self._lock:
            live = list(self._live)
        for execution in live:
            execution.terminate()
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()


class KubernetesExecution(Execution):
    def __init__(self, backend: KubernetesBackend, spec: LaunchSpec, name: str, prefix: str,
                 staging: pod_spec.Staging, on_line: LineSink):
        self.backend = backend
        self.api = backend.api
        self.spec = spec
        self.pod = name
        self.prefix = prefix
        self.staging = staging
        self._on_line = on_line
        self._lock = threading.Lock()
        self._terminated = False
        self._cleaned = False
        self._clean_done = threading.Event()
        self._exit: Optional[int] = None
        self._started = threading.Event()    # the main container left Pending
        self._pump: Optional[threading.Thread] = None
        parent = os.path.dirname(spec.log_path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._log = open(spec.log_path, 'a', encoding='utf-8') if spec.log_path else None

    def _emit(self, line: str) -> None:
        with self._lock:
            if self._log is not None and not self._log.closed:
                self._log.write(line + '\n')
                self._log.flush()
        with contextlib.suppress(Exception):   # a broken sink must not stop logging
            self._on_line(line)

    def follow_logs(self) -> None:
        self._pump = threading.Thread(target=self._pump_logs, daemon=True, name=f'logs {self.pod}')
        self._pump.start()

    def _pump_logs(self) -> None:
        with contextlib.suppress(Exception):   # the stream breaks when the pod is deleted
            # logs exist once the main container started: until then, watch the phase too
            while not self._started.wait(self.backend.poll_s):
                if self.api.pod_phase(self.pod).phase != 'Pending':
                    break
            if self._terminated:
                return
            for line in self.api.stream_logs(self.pod):
                self._emit(line)

    def _poll(self) -> PodStatus:
        hopeless_since = None
        while True:
            status = self.api.pod_phase(self.pod)
            if status.phase != 'Pending':
                self._started.set()
            if status.done:
                return status
            if status.phase == 'Pending' and any(r in status.reason for r in _HOPELESS):
                hopeless_since = hopeless_since or time.monotonic()
                if time.monotonic() - hopeless_since > self.backend.hopeless_grace_s:
                    return PodStatus('Failed', None, status.reason)
            else:
                hopeless_since = None
            time.sleep(self.backend.poll_s)

    def wait(self) -> int:
        if self._exit is not None:
            return self._exit
        try:
            status = self._poll()
            self._started.set()
            if self._pump is not None:
                self._pump.join(timeout=30)
            code = self._exit_code(status)
            if status.image_id and status.phase == 'Succeeded':
                self.backend.remember_digest(self.spec.image, status.image_id)
            if code == 0:
                try:
                    self.backend.stager.stage_out(self.prefix, self.staging,
                                                  {os.path.abspath(self.spec.log_path)})
                except Exception as exc:
                    self._emit(f'localrunner: fetching the outputs of pod {self.pod} failed: {exc}')
                    code = pod_spec.UPLOAD_FAILED
        except BaseException:   # KeyboardInterrupt while waiting: leave nothing behind
            self.terminate()
            raise
        self._exit = code
        self._cleanup()
        return code

    def _exit_code(self, status: PodStatus) -> int:
        if self._terminated or status.phase == 'Gone':
            return KILLED
        if status.phase == 'Succeeded':
            return status.exit_code or 0
        if status.exit_code:
            if status.reason and status.reason not in ('Error', 'Completed'):
                self._emit(f'localrunner: pod {self.pod} failed: {status.reason}')
            return status.exit_code
        self._emit(f'localrunner: pod {self.pod} failed: {status.reason or "no reason given"}')
        return POD_FAILED

    def terminate(self) -> None:
        with self._lock:
            if self._terminated:
                return
            self._terminated = True
        self._started.set()
        self._cleanup()

    def _cleanup(self) -> None:
        with self._lock:
            first = not self._cleaned
            self._cleaned = True
        if not first:   # another thread is at it: return only once the pod is gone
            self._clean_done.wait(60)
            return
        try:
            with contextlib.suppress(Exception):
                self.api.delete_pod(self.pod)
            self.backend._drop_staging(self.prefix)
            if self._pump is not None and self._pump is not threading.current_thread():
                self._pump.join(timeout=10)
            with self._lock:
                if self._log is not None:
                    self._log.close()
            with self.backend._lock:
                self.backend._live.discard(self)
        finally:
            self._clean_done.set()
