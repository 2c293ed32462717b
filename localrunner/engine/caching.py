"""The engine's use of localrunner_cache: action keys, lookups, recording, explaining misses.

The action key is the xxh3-128 digest of the canonical JSON of everything that can change a
task's result (docs/cache-key.md): executor (image identity, command, args, env, python env),
input parameter values, input artifacts' type + metadata + CONTENT digest, declared outputs,
accelerator type and count, and the key-schema version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Optional

import diskcache

from localrunner_cache import CAS, ActionCache, ActionResult, StatMemo, digest_bytes

KEY_SCHEMA_VERSION = 1


def canonical(value: Any) -> Any:
    """One form per value: floats that are whole become ints (KFP's proto numbers are doubles:
    5 and 5.0 are the same parameter value), dict keys sorted by json.dumps."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(',', ':'), ensure_ascii=False)


def action_key(parts: dict) -> str:
    return digest_bytes(canonical_json(parts).encode())


from localrunner.units import parse_duration  # noqa: E402,F401 - durations are parsed in one place


def diff_parts(old: Any, new: Any, path: str = '') -> list[str]:
    """Where two key descriptions differ, as dotted paths (for explain-cache)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            p = f'{path}.{k}' if path else str(k)
            if k not in old:
                out.append(f'{p} (new)')
            elif k not in new:
                out.append(f'{p} (removed)')
            else:
                out += diff_parts(old[k], new[k], p)
        return out
    if canonical(old) != canonical(new):
        return [path or '(everything)']
    return []


# kfp/dsl/pipeline_context.py reads the variable with click's truth set
_KFP_TRUE = frozenset({'1', 'true', 't', 'yes', 'y', 'on'})


def caching_disabled_by_env() -> bool:
    """KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT, read as the kfp SDK reads it."""
    return os.environ.get('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT', '').strip().lower() in _KFP_TRUE


def task_caching_enabled(caching_options: Optional[dict]) -> bool:
    """Whether the IR turns caching on for a task. `cachingOptions.enableCache` is a proto3
    bool: the compiler writes `cachingOptions: {}` for set_caching_options(False) (and for
    every task compiled with KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT), and an absent field
    reads as false; KFP's driver serves a cached result only when
    `GetCachingOptions().GetEnableCache()` is true (kubeflow/pipelines
    backend/src/v2/driver/container.go; the compiler side is
    kfp/compiler/pipeline_spec_builder.py)."""
    return isinstance(caching_options, dict) and caching_options.get('enableCache') is True


@dataclasses.dataclass
class CacheSettings:
    enabled: bool = True                 # --no-cache: no task reads or writes the cache
    max_age_s: Optional[float] = None    # --cache-max-age
    disabled_by_default: bool = False    # KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT
    remote: Optional[str] = None         # s3://bucket/prefix: a team-shared action cache + CAS
    share_secrets: bool = False          # --remote-cache-secrets: push results of tasks that read a secret too


def open_remote(url: str):
    """s3://bucket/prefix, reached with LOCALRUNNER_S3_ENDPOINT (host:port; default AWS) and
    the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; LOCALRUNNER_S3_INSECURE=1 for http."""
    from minio import Minio
    from localrunner_cache import RemoteStore
    if not url.startswith('s3://'):
        raise ValueError(f'{url}: expected s3://BUCKET[/PREFIX]')
    bucket, _, prefix = url[len('s3://'):].partition('/')
    endpoint = os.environ.get('LOCALRUNNER_S3_ENDPOINT', 's3.amazonaws.com')
    endpoint = endpoint.split('://', 1)[-1]
    import urllib3
    # a shared cache that does not answer must cost seconds, not minutes, per task
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=60),
                               retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                     status_forcelist=[500, 502, 503, 504]))
    client = Minio(endpoint, access_key=os.environ.get('AWS_ACCESS_KEY_ID'), http_client=http,
                   secret_key=os.environ.get('AWS_SECRET_ACCESS_KEY'),
                   secure=os.environ.get('LOCALRUNNER_S3_INSECURE', '') not in ('1', 'true'),
                   region=os.environ.get('AWS_DEFAULT_REGION'))
    return RemoteStore(client, bucket, prefix.strip('/'))


class TaskCache:
    """Per run root: <root>/cache/{cas,actions,memo.db,last}."""

    def __init__(self, root: str, settings: CacheSettings):
        self.dir = os.path.join(root, 'cache')
        os.makedirs(self.dir, exist_ok=True)
        self.cas = CAS(os.path.join(self.dir, 'cas'))
        self.actions = ActionCache(os.path.join(self.dir, 'actions'))
        self.memo = StatMemo(os.path.join(self.dir, 'memo.db'))
        self.settings = settings
        self._last: Optional[diskcache.Cache] = None
        self.remote = open_remote(settings.remote) if settings.remote else None
        self.remote_errors: list[str] = []

    @property
    def last(self) -> diskcache.Cache:
        """(pipeline, task path) -> the last key and its parts, to explain a later miss."""
        if self._last is None:
            self._last = diskcache.Cache(os.path.join(self.dir, 'last'))
        return self._last

    def wants_cache(self, caching_options: Optional[dict]) -> bool:
        """Whether a task with the IR's `cachingOptions` uses the cache at all: reads it,
        records into it and shares a result with an identical task of the same run. Off
        for the task (task_caching_enabled), for the run (--no-cache), or by
        KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT at run time (the SDK reads it when it
        compiles; a pipeline compiled without it still turns caching off when it is set
        for the run, as the user asked)."""
        if not self.settings.enabled or self.settings.disabled_by_default:
            return False
        return task_caching_enabled(caching_options)

    def lookup(self, key: str) -> Optional[ActionResult]:
        hit = self.actions.get(key, cas=self.cas, max_age_s=self.settings.max_age_s)
        if hit is not None or self.remote is None:
            return hit
        try:
            shared = self.remote.get_action(key)
            if shared is None or (self.settings.max_age_s is not None
                                  and time.time() - shared.created > self.settings.max_age_s):
                return None
            for digest in shared.digests:
                self.remote.pull(self.cas, digest)
            self.actions.put(key, shared, cas=self.cas)
            return shared
        except Exception as e:            # a remote problem is a miss, never a failed task
            self.remote_errors.append(f'remote cache lookup failed: {e}')
            return None

    def put_output(self, path: str) -> tuple[Optional[str], Optional[str]]:
        """Stores what a task left at an output path: (digest, kind), or (None, None) if nothing."""
        if not os.path.lexists(path):
            return None, None
        return self.cas.put_path(path, memo=None)

    def digest_input(self, path: str) -> tuple[Optional[str], Optional[str]]:
        """An artifact not produced in this run (importer): digest with the stat memo, store it too."""
        if not os.path.exists(path):
            return None, None
        return self.cas.put_path(path, memo=self.memo)

    def record(self, key: str, parts: dict, outputs: dict, digests: set, producer: dict,
               share: bool = True) -> None:
        """Records a task's result locally and, with `share` and a remote, pushes it there.
        share=False keeps it on this machine (a task that read a secret, unless the user
        opted in)."""
        result = ActionResult(outputs=outputs, digests=set(digests), created=time.time(),
                              producer=producer, key_parts=parts)
        self.actions.put(key, result, cas=self.cas)
        if self.remote is not None and share:
            try:
                for digest in digests:
                    self.remote.push(self.cas, digest)
                self.remote.put_action(key, result)
            except Exception as e:
                self.remote_errors.append(f'remote cache upload failed: {e}')

    def remember(self, pipeline: str, task: str, key: str, parts: dict, run_id: str) -> None:
        self.last.set(f'{pipeline}\0{task}', {'key': key, 'parts': canonical(parts), 'run': run_id})

    def previous(self, pipeline: str, task: str) -> Optional[dict]:
        return self.last.get(f'{pipeline}\0{task}')

    def close(self) -> None:
        for closer in (self.actions.close, getattr(self.memo, 'close', None)):
            if closer:
                try:
                    closer()
                except Exception:
                    pass
        if self._last is not None:
            self._last.close()


# ---------------------------------------------------------------------------- the key
def key_parts(*, image: str, command: list, args: list, env: dict, secret_env: set, params: dict,
              artifacts: dict, outputs: dict, accelerator: dict, volumes: list, environment: str,
              secret_digest: Callable[[bytes], str], volume_content: Optional[dict] = None) -> dict:
    """Everything that can change a task's result, as the action key's canonical document
    (docs/cache.md). Stored with the entry and shared through a remote cache, so a secret
    (the env values named in `secret_env`, the content of a secret volume) enters only as
    `secret_digest(value)`: a keyed digest (hmac-sha256 under the cache's own key), which
    changes when the secret changes and cannot be checked against guesses without the key.
    `volume_content`: mount path -> (kind, content) of each secret / config-map volume
    (k8s_local.K8sEffect): rotating a mounted secret or config map is a new key; a config map
    enters as a plain SHA-256. `artifacts` are the inputs' key forms (type, metadata, content
    digest; never a path)."""
    parts = {
        'schema': KEY_SCHEMA_VERSION,
        'executor': {'image': image, 'command': list(command), 'args': list(args),
                     'env': {k: secret_digest(v.encode()) if k in secret_env else v for k, v in env.items()}},
        'inputs': {'parameters': canonical(params), 'artifacts': artifacts},
        'outputs': outputs,
        'accelerator': accelerator,
        'volumes': sorted(volumes),
        'environment': environment,
    }
    if volume_content:          # only then: the keys of tasks without such volumes don't change
        parts['volume_content'] = {
            path: secret_digest(content) if kind == 'secret' else 'sha256:' + hashlib.sha256(content).hexdigest()
            for path, (kind, content) in sorted(volume_content.items())}
    return parts


def custom_key_parts(cache_key: str, component: dict, container: dict) -> dict:
    """set_caching_options(cache_key=K): the user's key replaces the computed one (the user
    vouches that K names the result), scoped by the component as kfp.local scopes it
    (kfp/local/cache.py compute_key): two different components with the same K never share a
    result, while one component used twice (comp-x, comp-x-2 in the IR) does. A component is
    its interface and what it runs: the lightweight function's name, or image and command."""
    args = [str(a) for a in container.get('args', []) or []]
    function = args[args.index('--function_to_execute') + 1] if '--function_to_execute' in args[:-1] else None
    identity = {'inputs': component.get('inputDefinitions', {}), 'outputs': component.get('outputDefinitions', {})}
    identity.update({'function': function} if function else
                    {'image': container.get('image', ''), 'command': container.get('command', [])})
    return {'schema': KEY_SCHEMA_VERSION, 'custom_cache_key': cache_key, 'component': identity}
