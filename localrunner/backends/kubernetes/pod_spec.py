"""The Pod manifest for one task attempt (pure: plain dicts, no cluster calls).

A cluster has neither this machine's files nor its environments, so the pod brings both:
- every host path the task needs is an emptyDir mounted at the SAME absolute path (artifact
  URIs keep their meaning); an init container fills them from presigned GET URLs;
- the main container's command is wrapped: run the task, then tar the writable folders and
  PUT them to a presigned URL, then exit with the TASK's status;
- a lightweight component's pip prologue, which localrunner lifts off argv to build a venv
  or derived image locally, is re-applied in the pod: there is no local venv on a cluster,
  so the pod pip-installs exactly what KFP's own prologue would.
The images (task image by default for staging) need `sh`, `tar` and one of curl / python3 /
wget (GNU) -- true of python and most base images, not of distroless ones.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from typing import Any, Callable, Optional, Union

from localrunner.backends.base import LaunchSpec
from localrunner.environments.python_env import PythonEnv

MAIN = 'main'                      # == api.MAIN_CONTAINER
STAGE_DIR = '/localrunner-stage'   # scratch emptyDir for the archives going in and out
OUT_ARCHIVE = 'out.tar.gz'         # the object the pod PUTs: its writable folders after the task
UPLOAD_FAILED = 86                 # exit status when the task succeeded but its outputs were lost
DEFAULT_GPU_RESOURCE = 'nvidia.com/gpu'
_SYSTEM_TOPS = {'', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'usr', 'etc', 'proc', 'sys', 'dev'}
_LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')
_LABEL_KEY = re.compile(r'^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?'
                        r'[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')


@dataclasses.dataclass
class Download:
    url: str
    path: str
    is_dir: bool        # a folder travels as one .tar.gz, extracted into path


@dataclasses.dataclass
class Staging:
    """What staging.py prepared for the pod."""
    downloads: list[Download]
    upload_url: str                         # PUT target of a .tar.gz of upload_paths
    upload_paths: list[str]                 # writable folders (the attempt's task folder)
    volumes: list[tuple[str, bool]]         # emptyDir mount points: (folder, read_only)


def plan_volumes(entries: list[tuple[str, bool, bool]]) -> list[tuple[str, bool]]:
    """(path, is_dir, read_only) -> emptyDir mount points. An emptyDir is a folder, so a file
    is staged into a volume at its parent; a folder inside another one shares it (read-only
    only when everything in it is)."""
    wanted: dict[str, bool] = {}
    for path, is_dir, read_only in entries:
        folder = os.path.abspath(path if is_dir else os.path.dirname(path))
        parts = folder.strip('/').split('/')
        if parts[0] in _SYSTEM_TOPS or folder == STAGE_DIR:
            raise ValueError(f'{path}: staging it would mount a volume over {folder} in the pod; '
                             'keep artifacts and run roots out of system folders')
        wanted[folder] = wanted.get(folder, True) and read_only
    kept: list[list] = []
    for folder in sorted(wanted, key=len):
        outer = next((k for k in kept if folder.startswith(k[0].rstrip('/') + '/')), None)
        if outer is None:
            kept.append([folder, wanted[folder]])
        else:
            outer[1] = outer[1] and wanted[folder]
    return [(folder, ro) for folder, ro in kept]


def staged_paths(spec: LaunchSpec) -> dict[str, bool]:
    """Every host path the pod needs -> read-only? Inputs are read-only; the task folder (and
    any path also mounted writable) is not."""
    read_only: dict[str, bool] = {}
    for mount in spec.mounts:
        path = os.path.abspath(mount.path)
        read_only[path] = read_only.get(path, True) and mount.read_only
    read_only[os.path.abspath(spec.workdir)] = False
    return dict(sorted(read_only.items()))


def plan_staging(spec: LaunchSpec, is_dir: Callable[[str], bool], get_url: Callable[[str], str],
                 put_url: Callable[[str], str]) -> tuple[Staging, list[tuple[str, str, bool]]]:
    """What the pod downloads and uploads, given whether a host path is a folder and how an
    object name (relative to the attempt's prefix) is signed. Returns the Staging and the
    uploads to make before the pod starts: (host path, object name, is a folder). The
    backend signs real URLs; `localrunner render` passes placeholders."""
    downloads, writable, entries, uploads = [], [], [], []
    for n, (path, read_only) in enumerate(staged_paths(spec).items()):
        folder = is_dir(path)
        name = f'in-{n}' + ('.tar.gz' if folder else '')
        entries.append((path, folder, read_only))
        uploads.append((path, name, folder))
        downloads.append(Download(get_url(name), path, folder))
        if not read_only:
            writable.append(path)
    staging = Staging(downloads=downloads, upload_url=put_url(OUT_ARCHIVE), upload_paths=writable,
                      volumes=plan_volumes(entries))
    return staging, uploads


def pod_name(task: str, uid: str) -> str:
    """A DNS-1123 label: lr-<task>-<uid>."""
    slug = re.sub(r'[^a-z0-9-]+', '-', task.lower()).strip('-')[:40].strip('-') or 'task'
    return f'lr-{slug}-{uid[:10]}'


def resolve_platform(config: dict, lookup: Union[Callable[[dict], Any], dict]) -> dict:
    """Kept for callers of this module; the engine resolves names itself (k8s_local.resolve_names)."""
    from localrunner.engine.k8s_local import resolve_names
    return resolve_names(config, lookup)


def _name(item: dict, kind: str, where: str) -> str:
    name = item.get(f'{kind}Name')
    if not name and kind == 'pvc':
        name = item.get('constant')
    if not name:
        ref = item.get(f'{kind}NameParameter') or {}
        name = (ref.get('runtimeValue') or {}).get('constant') if isinstance(ref, dict) else ref
    if not name:
        raise ValueError(f'kfp-kubernetes {where}: the {kind} name is not known (resolve it '
                         'with pod_spec.resolve_platform before launching)')
    return str(name)


def _cpu(cores: Optional[float]) -> Optional[str]:
    if cores is None:
        return None
    millis = round(cores * 1000)
    return f'{millis // 1000}' if millis % 1000 == 0 else f'{millis}m'


def resources(spec: LaunchSpec) -> dict:
    r = spec.resources
    limits = {'cpu': _cpu(r.cpu_limit), 'memory': r.memory_limit and str(int(r.memory_limit))}
    requests = {'cpu': _cpu(r.cpu_request), 'memory': r.memory_request and str(int(r.memory_request))}
    if r.accelerator_count:
        # An accelerator 'type' that is a resource name (vendor.com/gpu) is used as is; a
        # bare model name (NVIDIA_TESLA_T4) cannot be a resource: ask for an NVIDIA GPU.
        kind = r.accelerator_type if r.accelerator_type and '/' in r.accelerator_type \
            else DEFAULT_GPU_RESOURCE
        limits[kind] = str(int(r.accelerator_count))
    out = {'limits': {k: v for k, v in limits.items() if v},
           'requests': {k: v for k, v in requests.items() if v}}
    return {k: v for k, v in out.items() if v}


def _shell_funcs() -> str:
    """lr_get URL FILE / lr_put FILE URL with whatever the image has."""
    py_get = ('import shutil,sys,urllib.request as u\n'
              'with u.urlopen(sys.argv[1]) as r, open(sys.argv[2], "wb") as f: shutil.copyfileobj(r, f)')
    py_put = ('import os,sys,urllib.request as u\n'
              'f = open(sys.argv[1], "rb")\n'
              'h = {"Content-Type": "application/gzip", "Content-Length": str(os.path.getsize(sys.argv[1]))}\n'
              'u.urlopen(u.Request(sys.argv[2], data=f, method="PUT", headers=h)).read()')
    return f'''lr_has() {{ command -v "$1" >/dev/null 2>&1; }}
lr_get() {{
  if lr_has curl; then curl -fsSL --retry 3 -o "$2" "$1"
  elif lr_has python3; then python3 -c {shlex.quote(py_get)} "$1" "$2"
  elif lr_has wget; then wget -q -O "$2" "$1"
  else echo "localrunner: the image has none of curl, python3, wget" >&2; return 127; fi
}}
lr_put() {{
  if lr_has curl; then curl -fsS --retry 3 -X PUT -H "Content-Type: application/gzip" -T "$1" "$2"
  elif lr_has python3; then python3 -c {shlex.quote(py_put)} "$1" "$2"
  elif lr_has wget; then wget -q -O /dev/null --method=PUT --body-file="$1" --header="Content-Type: application/gzip" "$2"
  else echo "localrunner: the image has none of curl, python3, wget" >&2; return 127; fi
}}
'''


def init_script(staging: Staging) -> str:
    lines = ['set -e', _shell_funcs()]
    for n, d in enumerate(staging.downloads):
        path, url = shlex.quote(d.path), shlex.quote(d.url)
        if d.is_dir:
            archive = shlex.quote(f'{STAGE_DIR}/in-{n}.tar.gz')
            lines += [f'mkdir -p {path}', f'lr_get {url} {archive}',
                      f'tar -xzf {archive} -C {path}', f'rm -f {archive}']
        else:
            lines += [f'mkdir -p {shlex.quote(os.path.dirname(d.path))}', f'lr_get {url} {path}']
    for path in staging.upload_paths:    # a writable folder that had nothing to bring
        lines.append(f'mkdir -p {shlex.quote(path)}')
    # The task may run as another user than staging did: let it write where it may write.
    writable = [shlex.quote(p) for p, ro in staging.volumes if not ro]
    lines.append(f'chmod -R a+rwX {STAGE_DIR} {" ".join(writable)}'.rstrip())
    return '\n'.join(lines) + '\n'


def pip_steps(env: PythonEnv) -> list[str]:
    """KFP's prologue, rebuilt from the lifted steps (same requirements, indexes, flags)."""
    out = []
    for step in env.steps:
        words = ['PIP_DISABLE_PIP_VERSION_CHECK=1', 'python3', '-m', 'pip', 'install', '--quiet',
                 '--no-warn-script-location']
        if step.no_deps:
            words.append('--no-deps')
        for url in step.index_urls[:1]:
            words += ['--index-url', url]
        for url in list(step.index_urls[1:]) + list(step.extra_index_urls):
            words += ['--extra-index-url', url]
        for host in step.trusted_hosts:
            words += ['--trusted-host', host]
        words += list(step.requirements)
        out.append(words[0] + ' ' + ' '.join(shlex.quote(w) for w in words[1:]))
    return out


def main_script(spec: LaunchSpec, staging: Staging) -> str:
    """Runs "$@" (the task), then ships the writable folders, then exits with the task's status."""
    run = '"$@"'
    if spec.python_env:   # as KFP's prologue: make sure pip exists, install, then run
        run = ('python3 -m pip --version >/dev/null 2>&1 || python3 -m ensurepip --user '
               '>/dev/null 2>&1\n  ' + ' &&\n  '.join(pip_steps(spec.python_env) + [run]))
    rel = ' '.join(shlex.quote(p.lstrip('/')) for p in staging.upload_paths)
    archive = f'{STAGE_DIR}/{OUT_ARCHIVE}'
    return f'''{_shell_funcs()}lr_task() {{
  {run}
}}
lr_task "$@"; status=$?
if tar -C / -czf {archive} {rel} && lr_put {archive} {shlex.quote(staging.upload_url)}; then :
else
  echo "localrunner: uploading the outputs failed" >&2
  if [ "$status" -eq 0 ]; then status={UPLOAD_FAILED}; fi
fi
exit "$status"
'''


def _labels(spec: LaunchSpec, platform: dict) -> tuple[dict, dict]:
    """Labels must be short and plain; what is not goes (whole) into annotations."""
    labels, annotations = {}, {}
    meta = platform.get('podMetadata') or {}
    annotations.update({str(k): str(v) for k, v in (meta.get('annotations') or {}).items()})
    for key, value in {**spec.labels, **(meta.get('labels') or {})}.items():
        key, value = str(key), str(value)
        if not _LABEL_KEY.match(key):
            annotations.setdefault('localrunner.dev/labels', '{}')
            extra = json.loads(annotations['localrunner.dev/labels'])
            extra[key] = value
            annotations['localrunner.dev/labels'] = json.dumps(extra, sort_keys=True)
            continue
        clean = re.sub(r'[^A-Za-z0-9_.-]+', '-', value)[:63].strip('-_.')
        labels[key] = clean
        if clean != value:
            annotations[key] = value
    return labels, annotations


def _constant_json(ref: Any, where: str) -> Any:
    """A kfp-kubernetes *Json setting (add_node_selector_json & co.). A constant is used as
    is; one taken from a pipeline parameter or an upstream output is refused, naming it,
    rather than dropped (KFP's driver resolves those at run time: backend/src/v2/driver/k8s.go)."""
    if isinstance(ref, dict) and 'runtimeValue' in ref:
        return (ref['runtimeValue'] or {}).get('constant')
    raise ValueError(f'kfp-kubernetes {where} taken from a pipeline parameter is not supported by '
                     'the kubernetes backend yet; give it as a constant')


def _platform(platform: dict, env: list, volumes: list, mounts: list, pod: dict, main: dict) -> None:
    """The kfp-kubernetes settings that mean something on a cluster, shaped as KFP's driver
    shapes them (kubeflow/pipelines backend/src/v2/driver/k8s.go, extendPodSpecPatch)."""
    for kind, ref in (('secret', 'secretKeyRef'), ('configMap', 'configMapKeyRef')):
        for item in platform.get(f'{kind}AsEnv') or []:
            name = _name(item, kind, f'{kind}AsEnv')
            for pair in item.get('keyToEnv') or []:
                source = {'name': name, 'key': pair.get('secretKey') or pair.get('configMapKey')}
                if 'optional' in item:
                    source['optional'] = bool(item['optional'])
                env.append({'name': pair['envVar'], 'valueFrom': {ref: source}})
        for n, item in enumerate(platform.get(f'{kind}AsVolume') or []):
            name = _name(item, kind, f'{kind}AsVolume')
            vol = f'{kind.lower()}-{n}'
            source = {'secretName': name} if kind == 'secret' else {'name': name}
            if 'optional' in item:
                source['optional'] = bool(item['optional'])
            volumes.append({'name': vol, kind: source})
            mounts.append({'name': vol, 'mountPath': item['mountPath'], 'readOnly': True})
    for item in platform.get('fieldPathAsEnv') or []:
        env.append({'name': item['name'], 'valueFrom': {'fieldRef': {'fieldPath': item['fieldPath']}}})
    for n, item in enumerate(platform.get('pvcMount') or []):
        volumes.append({'name': f'pvc-{n}',
                        'persistentVolumeClaim': {'claimName': _name(item, 'pvc', 'pvcMount')}})
        mount = {'name': f'pvc-{n}', 'mountPath': item['mountPath']}
        if item.get('subPath'):           # mount_pvc(sub_path=...)
            mount['subPath'] = item['subPath']
        mounts.append(mount)
    for item in platform.get('genericEphemeralVolume') or []:
        # add_ephemeral_volume: a claim made (and deleted) with the pod
        meta = item.get('metadata') or {}
        claim = {'accessModes': list(item.get('accessModes') or []),
                 'resources': {'requests': {'storage': str(item['size'])}}}
        if not item.get('defaultStorageClass'):
            claim['storageClassName'] = item.get('storageClassName', '')
        template: dict = {'spec': claim}
        labels = {k: str(v) for k, v in (meta.get('labels') or {}).items()}
        notes = {k: str(v) for k, v in (meta.get('annotations') or {}).items()}
        if labels or notes:
            template['metadata'] = {**({'labels': labels} if labels else {}),
                                    **({'annotations': notes} if notes else {})}
        volumes.append({'name': item['volumeName'], 'ephemeral': {'volumeClaimTemplate': template}})
        mounts.append({'name': item['volumeName'], 'mountPath': item['mountPath']})
    for n, item in enumerate(platform.get('emptyDirMounts') or []):
        vol = item.get('volumeName') or f'empty-{n}'
        source = {k: item[k] for k in ('medium', 'sizeLimit') if item.get(k)}
        volumes.append({'name': vol, 'emptyDir': source})
        mounts.append({'name': vol, 'mountPath': item['mountPath']})
    shm = platform.get('enabledSharedMemory')
    if shm is not None:
        source = {'medium': 'Memory', **({'sizeLimit': shm['size']} if shm.get('size') else {})}
        volumes.append({'name': shm.get('volumeName') or 'dshm', 'emptyDir': source})
        mounts.append({'name': shm.get('volumeName') or 'dshm', 'mountPath': '/dev/shm'})
    node_selector = platform.get('nodeSelector') or {}
    selector = node_selector.get('labels')
    if 'nodeSelectorJson' in node_selector:
        selector = _constant_json(node_selector['nodeSelectorJson'], 'nodeSelector (add_node_selector_json)')
    if selector:
        pod['nodeSelector'] = {str(k): str(v) for k, v in selector.items()}
    tolerations = []
    for t in platform.get('tolerations') or []:
        if 'tolerationJson' in t:    # one toleration or a list of them, appended
            value = _constant_json(t['tolerationJson'], 'tolerations (add_toleration_json)')
            tolerations += value if isinstance(value, list) else [value] if value else []
            continue
        tol = {k: t[k] for k in ('key', 'operator', 'value', 'effect') if t.get(k)}
        if t.get('tolerationSeconds') is not None:
            tol['tolerationSeconds'] = int(t['tolerationSeconds'])
        tolerations.append(tol)
    if tolerations:
        pod['tolerations'] = tolerations
    affinity = _node_affinity(platform.get('nodeAffinity') or [])
    security = platform.get('securityContext') or {}
    if security:    # set_security_context: the user's ids, and every capability dropped
        context: dict = {k: int(security[k]) for k in ('runAsUser', 'runAsGroup')
                         if security.get(k) is not None}
        if security.get('runAsNonRoot') is not None:    # what set_security_context(run_as_non_root=) asks
            context['runAsNonRoot'] = bool(security['runAsNonRoot'])
        main['securityContext'] = {**context, 'capabilities': {'drop': ['ALL']}}
    if affinity:
        pod['affinity'] = {'nodeAffinity': affinity}
    pulls = [{'name': _name(i, 'secret', 'imagePullSecret')} for i in platform.get('imagePullSecret') or []]
    if pulls:
        pod['imagePullSecrets'] = pulls
    if platform.get('imagePullPolicy'):
        main['imagePullPolicy'] = platform['imagePullPolicy']
    if platform.get('activeDeadlineSeconds'):
        pod['activeDeadlineSeconds'] = int(platform['activeDeadlineSeconds'])


def _node_affinity(terms: list) -> dict:
    required, preferred = [], []
    for term in terms:
        if 'nodeAffinityJson' in term:   # a whole NodeAffinity: its terms are appended
            value = _constant_json(term['nodeAffinityJson'], 'nodeAffinity (add_node_affinity_json)') or {}
            required += (value.get('requiredDuringSchedulingIgnoredDuringExecution') or {}).get(
                'nodeSelectorTerms') or []
            preferred += value.get('preferredDuringSchedulingIgnoredDuringExecution') or []
            continue
        selector = {k: term[k] for k in ('matchExpressions', 'matchFields') if term.get(k)}
        if not selector:
            continue
        if term.get('weight'):
            preferred.append({'weight': int(term['weight']), 'preference': selector})
        else:
            required.append(selector)
    out = {}
    if required:
        out['requiredDuringSchedulingIgnoredDuringExecution'] = {'nodeSelectorTerms': required}
    if preferred:
        out['preferredDuringSchedulingIgnoredDuringExecution'] = preferred
    return out


def build_pod(spec: LaunchSpec, name: str, staging: Staging, platform: Optional[dict] = None,
              stage_image: Optional[str] = None) -> dict:
    """The Pod manifest. spec.volumes (host folders standing in for secrets/PVCs locally) are
    not used: on a cluster the objects named in `platform` are mounted instead."""
    if not spec.argv:
        raise ValueError(f'task {spec.task}: empty command')
    platform = platform or {}
    volumes = [{'name': 'lr-stage', 'emptyDir': {}}]
    stage_mounts = [{'name': 'lr-stage', 'mountPath': STAGE_DIR}]
    main_mounts = list(stage_mounts)
    for n, (folder, read_only) in enumerate(staging.volumes):
        volumes.append({'name': f'lr-path-{n}', 'emptyDir': {}})
        stage_mounts.append({'name': f'lr-path-{n}', 'mountPath': folder})
        main_mounts.append({'name': f'lr-path-{n}', 'mountPath': folder, 'readOnly': read_only})
    env_from_platform: list = []
    main = {'name': MAIN, 'image': spec.image,
            'command': ['sh', '-c', main_script(spec, staging), 'localrunner-task', *spec.argv],
            'workingDir': spec.workdir}
    labels, annotations = _labels(spec, platform)
    pod: dict = {'restartPolicy': 'Never'}
    _platform(platform, env_from_platform, volumes, main_mounts, pod, main)
    platform_names = {e['name'] for e in env_from_platform}
    # a local stand-in value (from --secret) must not shadow the cluster's own secret
    env = [{'name': k, 'value': str(v)} for k, v in sorted(spec.env.items()) if k not in platform_names]
    main['env'] = env + env_from_platform
    res = resources(spec)
    if res:
        main['resources'] = res
    main['volumeMounts'] = main_mounts
    init = {'name': 'stage-in', 'image': stage_image or spec.image,
            'command': ['sh', '-c', init_script(staging)], 'volumeMounts': stage_mounts}
    if main.get('imagePullPolicy') and not stage_image:
        init['imagePullPolicy'] = main['imagePullPolicy']
    pod.update(initContainers=[init], containers=[main], volumes=volumes)
    metadata = {'name': name, 'labels': labels}
    if annotations:
        metadata['annotations'] = annotations
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': metadata, 'spec': pod}
