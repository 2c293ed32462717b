"""The local meaning of kfp-kubernetes settings (the IR's platforms.kubernetes section).

Honoured: podMetadata + fieldPathAsEnv, secrets and config maps as env or volume (values
from `--secret NAME=PATH` / `--config-map NAME=PATH`; volumes mounted read-only, as a
cluster mounts them), PVC mounts (`--pvc NAME=DIR`, default a folder under the run root),
CreatePVC/DeletePVC as folders. Scheduling settings (node selector, affinity, tolerations,
pull secrets...) have no local effect: recorded, warned once.

A secret enters a cache key only as a keyed digest (TaskCache.secret_digest, under the
cache's own secret.key), never in clear nor as a plain hash anyone could test guesses against.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from typing import Any, Callable, Optional, Union

from localrunner.layout import PathEscape

NO_LOCAL_EFFECT = ('nodeSelector', 'nodeAffinity', 'tolerations', 'imagePullSecret', 'imagePullPolicy',
                   'enabledSharedMemory', 'genericEphemeralVolume', 'securityContext')
CREATE_PVC_IMAGE = 'argostub/createpvc'
DELETE_PVC_IMAGE = 'argostub/deletepvc'
_FIELD = re.compile(r"""^metadata\.(labels|annotations)\[['"](.+)['"]\]$""")
# a PVC name is a DNS-1123 subdomain in Kubernetes; locally it also names a folder under the root
_ENV_LINE = re.compile(r'^\s*(export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*=')
_DNS1123 = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')


@dataclasses.dataclass
class LocalSources:
    """Where local values for cluster objects come from (CLI options)."""
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)       # name -> file or folder
    config_maps: dict[str, str] = dataclasses.field(default_factory=dict)
    pvcs: dict[str, str] = dataclasses.field(default_factory=dict)          # name -> host folder (--pvc)
    pvc_root: str = ''                                                      # default folder for PVCs


@dataclasses.dataclass
class K8sEffect:
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    volumes: dict[str, str] = dataclasses.field(default_factory=dict)       # host folder -> mount path
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    timeout_s: Optional[float] = None                                       # activeDeadlineSeconds
    secret_env: set[str] = dataclasses.field(default_factory=set)          # env names holding secret values
    read_only: set[str] = dataclasses.field(default_factory=set)           # mount paths of secrets / config maps
    # mount path -> (kind, content) of each secret / config map volume: its content is in the key (key_parts)
    volume_content: dict[str, tuple[str, bytes]] = dataclasses.field(default_factory=dict)

    @property
    def reads_secret(self) -> bool:
        """The task is handed a secret (env or volume): its outputs stay on this machine
        unless the user shares them (--remote-cache-secrets)."""
        return bool(self.secret_env) or any(kind == 'secret' for kind, _ in self.volume_content.values())


def read_key_values(path: str) -> dict[str, str]:
    """A secret/config map from a folder (one file per key), a JSON/YAML mapping, or KEY=VALUE lines."""
    from localrunner.user_files import read_text
    if os.path.isdir(path):
        out = {}
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                try:
                    out[name] = read_text(full, errors='replace')     # a key file may be binary
                except ValueError as e:
                    raise ValueError(f'{full}: {e}') from None
        return out
    try:
        text = read_text(path)
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith('#')]
    if not lines:
        return {}
    if _ENV_LINE.match(lines[0]):             # a .env file: its KEY=VALUE lines (others ignored)
        pairs = (ln.split('=', 1) for ln in lines if _ENV_LINE.match(ln))
        return {re.sub(r'^export\s+', '', k.strip()): v.strip() for k, v in pairs}
    import yaml                         # here, not at import: most runs read no such file
    try:
        data = json.loads(text) if text.lstrip().startswith('{') else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f'{path}: neither KEY=VALUE lines nor a JSON/YAML mapping: {" ".join(str(e).split())}') \
            from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: neither KEY=VALUE lines nor a JSON/YAML mapping')
    from localrunner.params import not_json
    for k, v in data.items():
        why = not_json(v)
        if why:
            raise ValueError(f'{path}: key {k!r}: {why}')
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


Lookup = Callable[[dict], Any]


def _param(ref: Any, lookup: Lookup) -> Optional[Any]:
    """Value of a name-parameter: a bare string, {constant}, or an IR parameter reference
    ({componentInputParameter} / {taskOutputParameter} / {runtimeValue}) in the task's DAG."""
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref
    if 'constant' in ref and len(ref) == 1:
        return ref['constant']
    return lookup(ref)


def _name(item: dict, kind: str, lookup: Lookup) -> Optional[str]:
    value = _param(item.get(f'{kind}NameParameter'), lookup) or item.get(f'{kind}Name')
    return str(value) if value not in (None, '') else None


def field_value(field_path: str, pod_name: str, labels: dict, annotations: dict) -> str:
    m = _FIELD.match(field_path)
    if m:
        source = labels if m.group(1) == 'labels' else annotations
        return str(source.get(m.group(2), ''))
    return {
        'metadata.name': pod_name,
        'metadata.namespace': 'local',
        'metadata.uid': pod_name,
        'spec.nodeName': socket.gethostname(),
        'spec.serviceAccountName': 'default',
        'status.podIP': '127.0.0.1',
        'status.hostIP': '127.0.0.1',
    }.get(field_path, '')


PathOf = Callable[[str], str]


def apply(config: dict, lookup: Lookup, sources: LocalSources, pod_name: str, task: str,
          empty_dir: PathOf, pvc_folder: PathOf, private_dir: Optional[PathOf] = None) -> K8sEffect:
    """The local effect of an executor's kfp-kubernetes config. `empty_dir(volume)` and
    `pvc_folder(claim)` give the folders under the run root (layout.py); a PVC name must be a
    DNS-1123 name, and maps only to a folder under the root or to one given with --pvc.
    `private_dir(label)` gives a fresh folder outside the root, readable by this user only
    and removed with the run: where a secret or config map given as one file becomes the
    folder of one file per key a cluster would mount (a secret's bytes never enter the root)."""
    effect = K8sEffect()
    if not config:                  # most executors: no kfp-kubernetes settings at all
        return effect
    if config.get('activeDeadlineSeconds'):
        # kubernetes.set_timeout: the pod is killed after that long; so is the local attempt
        effect.timeout_s = float(config['activeDeadlineSeconds'])
    for item in config.get('emptyDirMounts') or []:
        # an emptyDir lives as long as the pod: a fresh folder per task, gone with the task folder
        folder = empty_dir(item.get('volumeName') or 'volume')
        os.makedirs(folder, exist_ok=True)
        effect.volumes[folder] = item['mountPath']
    meta = config.get('podMetadata') or {}
    effect.labels = {str(k): str(v) for k, v in (meta.get('labels') or {}).items()}
    effect.annotations = {str(k): str(v) for k, v in (meta.get('annotations') or {}).items()}
    for item in config.get('fieldPathAsEnv') or []:
        effect.env[item['name']] = field_value(item.get('fieldPath', ''), pod_name, effect.labels, effect.annotations)

    for kind, store, what in (('secret', sources.secrets, 'secret'), ('configMap', sources.config_maps, 'config map')):
        for item in config.get(f'{kind}AsEnv') or []:
            name = _name(item, kind, lookup)
            values = _lookup(name, store, what, item.get('optional', False), task, effect)
            for pair in item.get('keyToEnv') or []:
                key = pair.get('secretKey') or pair.get('configMapKey')
                if values is not None and key in values:
                    effect.env[pair['envVar']] = values[key]
                    if kind == 'secret':
                        effect.secret_env.add(pair['envVar'])
                elif values is not None and not item.get('optional'):
                    effect.warnings.append(f'{task}: {what} {name!r} has no key {key!r}')
        for item in config.get(f'{kind}AsVolume') or []:
            name = _name(item, kind, lookup)
            values = _lookup(name, store, what, item.get('optional', False), task, effect)
            if values is not None:
                source = os.path.abspath(store[name])
                if not os.path.isdir(source) and private_dir is not None:
                    source = _key_folder(private_dir(f'{kind}-{name}'), values)
                effect.volumes[source] = item['mountPath']
                effect.read_only.add(item['mountPath'])       # a cluster mounts them read-only
                effect.volume_content[item['mountPath']] = (kind, json.dumps(values, sort_keys=True).encode())

    for item in config.get('pvcMount') or []:
        name = (_param(item.get('pvcNameParameter'), lookup) or _param(item.get('taskOutputParameter'), lookup)
                or item.get('constant') or _param({k: v for k, v in item.items() if k == 'componentInputParameter'}
                                                  or None, lookup))
        if not name:
            effect.warnings.append(f'{task}: pvcMount at {item.get("mountPath")} names no PVC')
            continue
        effect.volumes[claim_folder(str(name), sources, pvc_folder)] = item['mountPath']

    for key in NO_LOCAL_EFFECT:
        if config.get(key):
            effect.ignored.append(key)
    return effect


def _key_folder(folder: str, values: dict) -> str:
    """One file per key, as a cluster mounts a secret or config map volume."""
    for key, value in values.items():
        path = os.path.join(folder, check_key(key))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(value)
    return folder


def check_key(key: str) -> str:
    """A secret or config-map key names a file in its volume: Kubernetes allows
    [-._a-zA-Z0-9]+ (and no '.' or '..')."""
    if not re.fullmatch(r'[-._a-zA-Z0-9]+', key) or key in ('.', '..'):
        raise ValueError(f'key {key!r} is not a valid secret/config-map key (letters, digits, -, _, .)')
    return key


def _lookup(name, store, what, optional, task, effect) -> Optional[dict]:
    if not name:
        if not optional:
            effect.warnings.append(f'{task}: {what} name is empty')
        return None
    path = store.get(name)
    if path is None:
        if not optional:
            flag = '--secret' if what == 'secret' else '--config-map'
            effect.warnings.append(f'{task}: {what} {name!r} is not defined locally (give it with {flag} {name}=PATH); '
                                   f'on a cluster this task would not start')
        return None
    return read_key_values(path)


def check_claim_name(name: str) -> str:
    """A PVC name as Kubernetes requires it (DNS-1123 subdomain): it may come from an
    upstream task's output, and it names a folder."""
    if not isinstance(name, str) or not _DNS1123.match(name) or '..' in name:
        raise PathEscape(f'PVC name {str(name)[:80]!r} is not a DNS-1123 name (lower-case letters, digits, '
                         f"'-' and '.', at most 253)")
    return name


def claim_folder(name: str, sources: LocalSources, pvc_folder: PathOf) -> str:
    """The host folder behind a claim: the one given with --pvc, else <root>/pvcs/<name>."""
    if name in sources.pvcs:
        folder = sources.pvcs[name]
    else:
        folder = pvc_folder(check_claim_name(name))
    os.makedirs(folder, exist_ok=True)
    return os.path.abspath(folder)


def claim_name(params: dict, run_id: str) -> str:
    """CreatePVC's claim name: pvc_name, or the run's name with pvc_name_suffix (as the
    cluster names it from the workflow)."""
    if params.get('pvc_name'):
        return str(params['pvc_name'])
    return f'{run_id}-{params.get("pvc_name_suffix") or "pvc"}'.lstrip('-').lower()


def create_pvc(params: dict, sources: LocalSources, run_id: str, pvc_folder: PathOf) -> str:
    """CreatePVC: the claim's name backed by a local folder."""
    name = claim_name(params, run_id)
    claim_folder(name, sources, pvc_folder)
    return name


def delete_pvc(params: dict, sources: LocalSources, pvc_folder: PathOf) -> None:
    """DeletePVC: removes the folder under the root; never a folder the user mapped in."""
    import shutil
    name = params.get('pvc_name')
    if not name or name in sources.pvcs:
        return
    shutil.rmtree(pvc_folder(check_claim_name(str(name))), ignore_errors=True)


def resolve_names(config: dict, lookup: Union[Lookup, dict]) -> dict:
    """The executor's kfp-kubernetes config with every *NameParameter turned into a plain
    name, for backends that hand the settings to a cluster. `lookup` resolves an IR parameter
    reference in the task's DAG (as apply() takes it), or is a dict of the component's inputs."""
    if isinstance(lookup, dict):
        inputs = lookup

        def lookup(ref: dict) -> Any:
            if 'componentInputParameter' in ref:
                return inputs.get(ref['componentInputParameter'])
            return (ref.get('runtimeValue') or {}).get('constant')
    if not config:
        return {}
    out = json.loads(json.dumps(config))
    for key, kind in (('secretAsEnv', 'secret'), ('secretAsVolume', 'secret'),
                      ('configMapAsEnv', 'configMap'), ('configMapAsVolume', 'configMap'),
                      ('imagePullSecret', 'secret')):
        for item in out.get(key) or []:
            value = item.get(f'{kind}Name') or _param(item.get(f'{kind}NameParameter'), lookup)
            if value not in (None, ''):
                item[f'{kind}Name'] = str(value)
    for item in out.get('pvcMount') or []:
        # the same precedence as k8s_local.apply (a CreatePVC's output included)
        value = (_param(item.get('pvcNameParameter'), lookup)
                 or _param(item.get('taskOutputParameter'), lookup) or item.get('constant')
                 or _param({k: v for k, v in item.items() if k == 'componentInputParameter'} or None,
                           lookup))
        if value not in (None, ''):
            item['pvcName'] = str(value)
    return out
