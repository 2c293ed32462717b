"""The engine's use of localrunner_cache: action keys, lookups, recording, explaining misses.

The action key is the xxh3-128 digest of the canonical JSON of everything that can change a
task's result (docs/cache-key.md): executor (image identity, command, args, env, python env),
input parameter values, input artifacts' type + metadata + CONTENT digest, declared outputs,
accelerator type and count, and the key-schema version.

Layout under a run root: cache/{cas,actions,memo.db,last,leases,secret.key} and quarantine/
(damaged indexes, set aside for inspection). Nothing here raises for a damaged or
unreachable cache: that is a miss and a warning in TaskCache.warnings (docs/cache.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from localrunner.errors import UsageError
from localrunner.layout import RootLayout
from localrunner_cache import (CAS, ActionCache, ActionResult, CacheError, Index, Lease, RemoteUnavailable,
                               StatMemo, digest_bytes, is_live, load_or_create_key, secret_digest)
from localrunner_cache.damage import unlink_planted
from localrunner_cache.digest import DIGEST_RE
from localrunner_cache.secret_key import read_key

if TYPE_CHECKING:
    from localrunner.spec.views import Component, Container

KEY_SCHEMA_VERSION = 1


_AS_IS = frozenset({str, int, bool, type(None)})


def canonical(value: Any) -> Any:
    """One form per value: floats that are whole become ints (KFP's proto numbers are doubles:
    5 and 5.0 are the same parameter value), dict keys sorted by json.dumps."""
    # the exact JSON types first (what a key's parts are made of, thousands of times a run)
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): canonical(v) for k, v in value.items()}
    if kind is list:
        return [canonical(v) for v in value]
    return _canonical_other(value)


def _canonical_other(value: Any) -> Any:
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
    return _json(canonical(value))


def _json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(',', ':'), ensure_ascii=False)


def action_key(parts: dict) -> str:
    return digest_bytes(canonical_json(parts).encode())


def canonical_key(document: dict) -> str:
    """action_key of a document already in canonical form (what canonical() returns): a
    task canonicalizes its parts once for the key, the remembered parts and the entry."""
    return digest_bytes(_json(document).encode())


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


@dataclasses.dataclass
class CacheSettings:
    enabled: bool = True                 # --no-cache: no task reads or writes the cache
    max_age_s: Optional[float] = None    # --cache-max-age
    disabled_by_default: bool = False    # KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT
    remote: Optional[str] = None         # s3://bucket/prefix: a team-shared action cache + CAS
    share_secrets: bool = False          # --remote-cache-secrets: push results of tasks that read a secret too


def run_is_live(root: str, run_id: str) -> bool:
    """Whether run ``run_id`` under ``root`` is alive (a process holds its cache lease)."""
    return is_live(RootLayout(root).leases_dir, run_id)


# A remote that does not answer must cost seconds, not minutes (docs/cache.md).
S3_CONNECT_TIMEOUT_S = 3.0
S3_READ_TIMEOUT_S = 10.0


def _seconds_from_env(name: str, default: float) -> float:
    text = os.environ.get(name, '').strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f'{name}={text}: expected a number of seconds')
    return value


def open_remote(url: str, warnings: Optional[list] = None):
    """s3://bucket/prefix, reached with LOCALRUNNER_S3_ENDPOINT (host:port; default AWS) and
    the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; LOCALRUNNER_S3_INSECURE=1 for http.
    Short timeouts (LOCALRUNNER_S3_CONNECT_TIMEOUT, LOCALRUNNER_S3_READ_TIMEOUT), one retry
    of a refused or timed-out connection and of a 5xx answer, none of a request that got no
    answer in time: with the store's circuit breaker, a dead remote costs one timeout per run."""
    from minio import Minio
    from localrunner_cache import RemoteStore
    if not url.startswith('s3://'):
        raise ValueError(f'{url}: expected s3://BUCKET[/PREFIX]')
    bucket, _, prefix = url[len('s3://'):].partition('/')
    endpoint = os.environ.get('LOCALRUNNER_S3_ENDPOINT', 's3.amazonaws.com')
    endpoint = endpoint.split('://', 1)[-1]
    import urllib3
    timeout = urllib3.Timeout(connect=_seconds_from_env('LOCALRUNNER_S3_CONNECT_TIMEOUT', S3_CONNECT_TIMEOUT_S),
                              read=_seconds_from_env('LOCALRUNNER_S3_READ_TIMEOUT', S3_READ_TIMEOUT_S))
    retries = urllib3.Retry(total=2, connect=1, read=0, other=0, status=2, backoff_factor=0.2,
                            status_forcelist=[500, 502, 503, 504])
    http = urllib3.PoolManager(timeout=timeout, retries=retries)
    client = Minio(endpoint, access_key=os.environ.get('AWS_ACCESS_KEY_ID'), http_client=http,
                   secret_key=os.environ.get('AWS_SECRET_ACCESS_KEY'),
                   secure=os.environ.get('LOCALRUNNER_S3_INSECURE', '') not in ('1', 'true'),
                   region=os.environ.get('AWS_DEFAULT_REGION'))
    return RemoteStore(client, bucket, prefix.strip('/'), warnings=warnings)


# ---------------------------------------------------------------------------------- entries
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Output parameter types of the IR (pipeline_spec.proto ParameterType) -> accepted values.
# A whole float is an integer, as canonical() has it (KFP carries numbers as doubles).
_PARAMETER_TYPES = {
    'STRING': lambda v: isinstance(v, str),
    'NUMBER_INTEGER': lambda v: _number(v) and (isinstance(v, int) or (math.isfinite(v) and v.is_integer())),
    'NUMBER_DOUBLE': _number,
    'BOOLEAN': lambda v: isinstance(v, bool),
    'LIST': lambda v: isinstance(v, list),
    'STRUCT': lambda v: isinstance(v, dict),
}


def _plain_name(name: Any) -> bool:
    """A name usable as one path component (the engine restores artifacts at
    <task dir>/artifacts/<name>)."""
    return (isinstance(name, str) and name not in ('', '.', '..') and '/' not in name and '\0' not in name
            and (os.altsep is None or os.altsep not in name))


def _short(value: Any) -> str:
    return repr(value)[:60]


def entry_problem(result: ActionResult, contract: Optional[dict]) -> Optional[str]:
    """What makes a cache entry unusable for a task, or None when it may be served.

    ``contract`` is the component's `outputDefinitions` from the IR ({'parameters': {name:
    {'parameterType', 'isOptional'}}, 'artifacts': {name: {'artifactType', 'isArtifactList'}}}):
    the entry must produce exactly what the component declares, parameter values of the
    declared types. Without it only the shapes are checked. Either way artifact names must
    be plain names (they become paths), every digest well-formed and among the entry's
    digests, kinds 'file' / 'tree' / none. Never raises: an entry from a damaged or
    tampered cache (local or remote) is a miss, never an error or a write elsewhere."""
    try:
        return _entry_problem(result, contract)
    except Exception as e:          # whatever shape it has, it is no usable entry
        return f'malformed entry ({type(e).__name__}: {e})'


def _entry_problem(result: ActionResult, contract: Optional[dict]) -> Optional[str]:
    outputs = result.outputs
    params, arts = outputs.get('parameters', {}), outputs.get('artifacts', {})
    if not isinstance(params, dict) or not isinstance(arts, dict):
        return 'outputs.parameters / outputs.artifacts are not JSON objects'
    declared_params = (contract or {}).get('parameters') or {}
    declared_arts = (contract or {}).get('artifacts') or {}
    for name, value in params.items():
        if contract is None:
            continue
        if name not in declared_params:
            return f'output parameter {_short(name)} is not declared by the component'
        ptype = (declared_params[name] or {}).get('parameterType')
        accepts = _PARAMETER_TYPES.get(ptype)
        if accepts is None:
            return f'output parameter {_short(name)} has a type this engine does not cache ({ptype!r})'
        if not accepts(value):
            return f'output parameter {_short(name)}: {_short(value)} is not a {ptype}'
    for name, lst in arts.items():
        if not _plain_name(name):
            return f'output artifact name {_short(name)} is not a plain name'
        if contract is not None and name not in declared_arts:
            return f'output artifact {_short(name)} is not declared by the component'
        if not isinstance(lst, list) or not lst and not (declared_arts.get(name) or {}).get('isArtifactList'):
            return f'output artifact {_short(name)}: not a list of artifacts'
        for a in lst:
            problem = _artifact_problem(a, result.digests)
            if problem:
                return f'output artifact {_short(name)}: {problem}'
    if contract is not None:
        for name, d in declared_params.items():
            if name not in params and not (d or {}).get('isOptional'):
                return f'declared output parameter {_short(name)} is missing'
        for name in declared_arts:
            if name not in arts:
                return f'declared output artifact {_short(name)} is missing'
    return None


def _artifact_problem(a: Any, digests: set) -> Optional[str]:
    if not isinstance(a, dict):
        return f'{_short(a)} is not a JSON object'
    if not isinstance(a.get('type'), str) or not isinstance(a.get('version'), str):
        return 'type / version are not strings'
    if a.get('metadata') is not None and not isinstance(a['metadata'], dict):
        return 'metadata is not a JSON object'
    digest, kind = a.get('digest'), a.get('kind')
    if kind not in ('file', 'tree', None):
        return f'kind {_short(kind)} is not file or tree'
    if digest is None:
        return None if kind is None else 'a kind without a digest'
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        return f'digest {_short(digest)} is malformed'
    if digest not in digests:
        return f'digest {digest} is not among the entry\'s digests'
    if kind is None:
        return 'a digest without a kind'
    return None


# ---------------------------------------------------------------------------------- the cache
class TaskCache:
    """Per run root: <root>/cache/{cas,actions,memo.db,last,leases,secret.key}.

    Never prints: what the engine should tell the user (a damaged index set aside, a
    rejected entry, the remote given up) collects in ``warnings``; drain it with
    drain_warnings() and emit each as a warning event. ``run_id`` names the lease this
    run holds on what it relies on (cache gc/prune and runs prune respect it)."""

    def __init__(self, root: str, settings: CacheSettings, run_id: Optional[str] = None):
        self.layout = layout = RootLayout(root)
        self.root = layout.root
        self.dir = layout.cache_dir
        self.quarantine = layout.quarantine_dir
        self.settings = settings
        self.warnings: list[str] = []
        # the cache's own folders are never links: one planted in their place (by a task that
        # could write there) would lead reads, writes and gc's deletes out of the root. Below
        # cache/, each store checks its own (CAS, ActionCache, Index, StatMemo, Lease, the key)
        self.warnings.extend(unlink_planted((self.dir, self.quarantine)))
        os.makedirs(self.dir, exist_ok=True)
        key_file = os.environ.get('LOCALRUNNER_CACHE_SECRET_KEY_FILE', '').strip()
        self._secret_key: Optional[bytes] = None
        if key_file:                          # the user's file: bad input, said before anything runs
            try:
                self._secret_key = read_key(key_file)
            except CacheError as e:
                raise UsageError(f'LOCALRUNNER_CACHE_SECRET_KEY_FILE: {e}') from None
        self.remote = open_remote(settings.remote, self.warnings) if settings.remote else None
        self.cas = CAS(layout.cas_dir, self.warnings)
        self.actions = ActionCache(layout.actions_dir, self.quarantine, self.warnings)
        self.memo = StatMemo(layout.memo_db, self.quarantine, self.warnings)
        self.lease = Lease(layout.leases_dir, run_id or f'anonymous-{uuid.uuid4().hex}')
        self.warnings.extend(self.lease.repairs)
        self._last: Optional[Index] = None
        self._remembered: dict[str, tuple] = {}
        self._ahead = threading.local()       # reading_ahead()'s (keys, entries found), per thread

    def drain_warnings(self) -> list[str]:
        """The warnings collected since the last call (thread-safe against appends)."""
        n = len(self.warnings)
        out = self.warnings[:n]
        del self.warnings[:n]
        return out

    @property
    def last(self) -> Index:
        """(pipeline, task path) -> the last key and its parts, to explain a later miss."""
        if self._last is None:
            self._last = Index(self.layout.last_dir, 'last', self.quarantine, self.warnings)
        return self._last

    @property
    def secret_key(self) -> bytes:
        """LOCALRUNNER_CACHE_SECRET_KEY_FILE's key (a team shares it to share results of
        tasks that read secrets), else this cache's own, made on first use (mode 0600)."""
        if self._secret_key is None:
            self._secret_key = load_or_create_key(self.layout.secret_key, self.quarantine,
                                                  self.warnings)
        return self._secret_key

    def secret_digest(self, value) -> str:
        """What stands for a secret value in a key: 'hmac-sha256:...' under secret_key."""
        return secret_digest(self.secret_key, value.encode() if isinstance(value, str) else bytes(value))

    def wants_cache(self, task_enabled: bool) -> bool:
        """Whether a task uses the cache at all: reads it, records into it and shares a result
        with an identical task of the same run. Off for the task (`task_enabled`: the IR's
        cachingOptions.enableCache, spec.views.Task.cache_enabled), for the run (--no-cache), or by
        KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT at run time (the SDK reads it when it
        compiles; a pipeline compiled without it still turns caching off when it is set
        for the run, as the user asked)."""
        if not self.settings.enabled or self.settings.disabled_by_default:
            return False
        return task_enabled

    # ------------------------------------------------------------------ leases
    def _hold(self, digests) -> bool:
        """Put ``digests`` in this run's lease before relying on them (gc keeps them)."""
        try:
            self.lease.hold(digests)
            return True
        except CacheError as e:
            self.warnings.append(f'cache lease: {e}')
            return False

    def _stored(self, digest: str, store) -> str:
        """Hold what was just stored; should a gc have swept it in between, store it again
        (now held, it stays)."""
        if self._hold([digest]) and not self.cas.is_complete(digest):
            digest = store()[0]
        return digest

    # ------------------------------------------------------------------ lookups
    def lookup(self, key: str, contract: Optional[dict] = None) -> Optional[ActionResult]:
        """The result cached for ``key`` (local, else remote), validated against the
        component's `outputDefinitions` (``contract``) and held in this run's lease; None
        for a miss. Never raises: damage, a rejected entry, a remote failure are misses
        with a warning. Restore with cas.materialize (it verifies every blob)."""
        try:
            hit = self._local_hit(key, contract)
        except CacheError as e:
            self.warnings.append(f'cache lookup failed ({e}); running the task')
            return None
        if hit is not None or self.remote is None:
            return hit
        return self._remote_hit(key, contract)

    def _too_old(self, result: ActionResult) -> bool:
        return self.settings.max_age_s is not None and time.time() - result.created > self.settings.max_age_s

    @contextlib.contextmanager
    def reading_ahead(self, keys: Sequence[str]):
        """Within, in this thread: a lookup() of one of ``keys`` uses what one read of them
        all found on entry (a stage's 1,000 lookups: two statements, not 1,000 round trips
        through diskcache and the GIL). The same answers as reading each at entry; an entry
        written (record(), a remote hit) or dropped here is forgotten, so a later lookup reads
        it again."""
        try:
            found = self.actions.get_many(keys) if keys else {}
        except Exception:                   # each lookup reads (and says) it on its own
            found, keys = {}, ()
        self._ahead.read = (set(keys), found)
        try:
            yield
        finally:
            self._ahead.read = None

    def _forget_ahead(self, key: str) -> None:
        """KEY's entry is changing: a lookup in this batch reads it again."""
        ahead = getattr(self._ahead, 'read', None)
        if ahead is not None:
            ahead[0].discard(key)

    def _put_entry(self, key: str, result: ActionResult) -> None:
        """KEY's entry written locally (CacheError if that fails): a task's result, or one
        pulled from the remote. A lookup later in this hop reads it, not what was read ahead."""
        self._forget_ahead(key)
        self.actions.put(key, result, cas=self.cas)

    def _local_entry(self, key: str) -> Optional[ActionResult]:
        ahead = getattr(self._ahead, 'read', None)
        if ahead is not None and key in ahead[0]:
            return ahead[1].get(key)
        return self.actions.get(key)

    def _local_hit(self, key: str, contract: Optional[dict]) -> Optional[ActionResult]:
        hit = self._local_entry(key)
        if hit is None or self._too_old(hit):
            return None
        problem = entry_problem(hit, contract)
        if problem:
            self.warnings.append(f'cache entry {key[:16]} rejected ({problem}); dropped, the task runs')
            self._forget_ahead(key)
            self.actions.delete(key)
            return None
        if not self._hold(hit.digests) or self.actions.missing(hit, self.cas):
            return None
        return hit

    def _remote_hit(self, key: str, contract: Optional[dict]) -> Optional[ActionResult]:
        try:
            shared = self.remote.get_action(key)
            if shared is None or self._too_old(shared):
                return None
            problem = entry_problem(shared, contract)
            if problem:
                self.warnings.append(f'remote cache entry {key[:16]} rejected ({problem}); the task runs')
                return None
            if not self._hold(shared.digests):
                return None
            for digest in sorted(shared.digests):
                self.remote.pull(self.cas, digest)
            self._put_entry(key, shared)
            return shared
        except RemoteUnavailable:         # already said, once
            return None
        except Exception as e:            # a remote problem is a miss, never a failed task
            self.warnings.append(f'remote cache lookup failed: {e}')
            return None

    # ------------------------------------------------------------------ storing
    def put_output(self, path: str, stop=None) -> tuple[Optional[str], Optional[str]]:
        """Stores what a task left at an output path: (digest, kind), or (None, None) if nothing.
        stop(): True gives up the copy (localrunner_cache.Stopped): the run was canceled."""
        if not os.path.lexists(path):
            return None, None
        digest, kind = self.cas.put_path(path, memo=None, stop=stop)
        return self._stored(digest, lambda: self.cas.put_path(path, memo=None, stop=stop)), kind

    def digest_input(self, path: str) -> tuple[Optional[str], Optional[str]]:
        """An artifact not produced in this run (importer): digest with the stat memo, store it too."""
        if not os.path.exists(path):
            return None, None
        digest, kind = self.cas.put_path(path, memo=self.memo)
        return self._stored(digest, lambda: self.cas.put_path(path, memo=self.memo)), kind

    def record(self, key: str, parts: dict, outputs: dict, digests: set, producer: dict,
               share: bool = True) -> None:
        """Record a task's result locally (CacheError if that fails, e.g. a full disk)
        and, with ``share`` and a remote, push it there. share=False keeps it on this
        machine (a task that read a secret, unless the user opted in)."""
        result = ActionResult(outputs=outputs, digests=set(digests), created=time.time(),
                              producer=producer, key_parts=parts)
        self._put_entry(key, result)
        if self.remote is None or not share:
            return
        try:
            for digest in sorted(digests):
                self.remote.push(self.cas, digest)
            self.remote.put_action(key, result)
        except RemoteUnavailable:
            pass
        except Exception as e:
            self.warnings.append(f'remote cache upload failed: {e}')

    # ------------------------------------------------------------------ explaining
    def remember(self, pipeline: str, task: str, key: str, parts: dict, run_id: str,
                 key_is_digest: bool = False) -> None:
        """Keeps a task's key to explain a later miss. Written when the run ends, in one
        transaction (a write per task costs an fsync per task). `parts` in canonical form;
        key_is_digest: KEY is canonical_key(parts), so the same key means the same parts."""
        self._remembered[f'{pipeline}\0{task}'] = (key, parts, run_id, key_is_digest)

    def _flush_remembered(self) -> None:
        items, self._remembered = self._remembered, {}
        if not items:
            return
        try:
            # a task whose key and parts are what is remembered already is not written again
            # (a cached rerun of 1,000 tasks reads 1,000 rows, in one query, instead of
            # rewriting them); the run kept is then the one that first had that key
            known = self.last.get_many(items)
            rows = [(k, _remembered_text(key, parts, run_id))
                    for k, (key, parts, run_id, key_is_digest) in items.items()
                    if not _remembers(known.get(k), key, parts, key_is_digest)]
            self.last.set_many(rows)
        except CacheError as e:         # only explains a later miss: never fails a run
            self.warnings.append(f'cannot remember the tasks\' keys: {e}')

    def previous(self, pipeline: str, task: str) -> Optional[dict]:
        return self._previous(f'{pipeline}\0{task}')

    def _previous(self, name: str) -> Optional[dict]:
        try:
            value = self.last.get(name)
            if isinstance(value, str):
                value = json.loads(value)
        except (CacheError, ValueError):
            return None
        # written as JSON text; older versions stored the dict itself
        return value if isinstance(value, dict) and isinstance(value.get('key'), str) else None

    def close(self) -> None:
        self._flush_remembered()
        for closer in (self.actions.close, self.memo.close, self.lease.release,
                       self._last.close if self._last is not None else None):
            if closer:
                try:
                    closer()
                except Exception:
                    pass


def _remembered_text(key: str, parts: dict, run_id: str) -> str:
    return json.dumps({'key': key, 'parts': parts, 'run': run_id}, sort_keys=True)


def _remembers(text: Optional[str], key: str, parts: dict, key_is_digest: bool) -> bool:
    """Whether TEXT, a remembered entry, holds KEY and PARTS. A key that is the parts'
    digest is compared alone, on the text (sort_keys puts it first): no parse, and the same
    digest means the same parts; a custom key (set_cache_key) is compared with its parts."""
    if text is None:
        return False
    if key_is_digest:
        return text.startswith('{"key": ' + json.dumps(key) + ', ')
    try:
        known = json.loads(text)
    except ValueError:
        return False
    return isinstance(known, dict) and known.get('key') == key and known.get('parts') == parts


# ---------------------------------------------------------------------------- the key
def key_parts(*, image: str, command: Sequence[str], args: Sequence[str], env: dict, secret_env: set, params: dict,
              artifacts: dict, outputs: Mapping, accelerator: dict, volumes: list, environment: str,
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


def custom_key_parts(cache_key: str, component: 'Component', container: 'Container') -> dict:
    """set_caching_options(cache_key=K): the user's key replaces the computed one (the user
    vouches that K names the result), scoped by the component as kfp.local scopes it
    (kfp/local/cache.py compute_key): two different components with the same K never share a
    result, while one component used twice (comp-x, comp-x-2 in the IR) does. A component is
    its interface (as written in the IR) and what it runs: the lightweight function's name, or
    image and command."""
    args = list(container.args)
    function = args[args.index('--function_to_execute') + 1] if '--function_to_execute' in args[:-1] else None
    identity = {'inputs': component.inputs.as_written, 'outputs': component.outputs.as_written}
    identity.update({'function': function} if function else
                    {'image': container.image, 'command': list(container.command)})
    return {'schema': KEY_SCHEMA_VERSION, 'custom_cache_key': cache_key, 'component': identity}
