"""The object-store side of a pod's files (minio client; S3, MinIO, moto all answer).

Per attempt, under <prefix>/<run>/<attempt>/:
  in-N        a read-only input file, as is
  in-N.tar.gz a read-only input folder, or a writable folder's current content
  out.tar.gz  the writable folders after the task (PUT by the pod)
The pod only ever sees presigned URLs: no credentials travel into the cluster. The URLs are
signed for `pod_endpoint` when the pods reach the store under another name than this
machine does (a port-forward here, a Service there).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import tarfile
import tempfile
from typing import Mapping, Optional

from localrunner.backends.base import LaunchError, LaunchSpec
from localrunner.backends.kubernetes.pod_spec import OUT_ARCHIVE, Staging, plan_staging, staged_paths


@dataclasses.dataclass
class S3Settings:
    endpoint: str                      # host:port (a scheme, if given, sets `secure`)
    bucket: str
    access_key: str
    secret_key: str
    secure: bool = True
    region: str = 'us-east-1'          # given, so presigning needs no round trip
    pod_endpoint: Optional[str] = None
    prefix: str = 'localrunner/staging'
    url_expiry_s: int = 12 * 3600      # a URL must outlive the pod's queueing + run time

    def __post_init__(self):
        self.endpoint, self.secure = _split_scheme(self.endpoint, self.secure)
        if self.pod_endpoint:
            self.pod_endpoint, _ = _split_scheme(self.pod_endpoint, self.secure)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides) -> 'S3Settings':
        """LOCALRUNNER_S3_* (AWS_* for the keys); a missing one -> LaunchError naming it."""
        def get(*names: str) -> Optional[str]:
            return next((environ[n] for n in names if environ.get(n)), None)

        values = {
            'endpoint': get('LOCALRUNNER_S3_ENDPOINT'),
            'bucket': get('LOCALRUNNER_S3_BUCKET'),
            'access_key': get('LOCALRUNNER_S3_ACCESS_KEY', 'AWS_ACCESS_KEY_ID'),
            'secret_key': get('LOCALRUNNER_S3_SECRET_KEY', 'AWS_SECRET_ACCESS_KEY'),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {'endpoint': 'LOCALRUNNER_S3_ENDPOINT', 'bucket': 'LOCALRUNNER_S3_BUCKET',
                 'access_key': 'LOCALRUNNER_S3_ACCESS_KEY (or AWS_ACCESS_KEY_ID)',
                 'secret_key': 'LOCALRUNNER_S3_SECRET_KEY (or AWS_SECRET_ACCESS_KEY)'}
        for key, name in names.items():
            if not values.get(key):
                raise LaunchError(f'kubernetes backend: {name} is not set (artifacts reach the '
                                  'cluster through an S3/MinIO bucket)', retryable=False)
        if 'secure' not in values and environ.get('LOCALRUNNER_S3_SECURE'):
            values['secure'] = environ['LOCALRUNNER_S3_SECURE'].lower() in ('1', 'true', 'yes')
        for key, name in (('pod_endpoint', 'LOCALRUNNER_S3_POD_ENDPOINT'),
                          ('region', 'LOCALRUNNER_S3_REGION')):
            if key not in values and environ.get(name):
                values[key] = environ[name]
        return cls(**values)


def _split_scheme(endpoint: str, secure: bool) -> tuple[str, bool]:
    for scheme, is_secure in (('https://', True), ('http://', False)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):].rstrip('/'), is_secure
    return endpoint.rstrip('/'), secure


class Stager:
    def __init__(self, settings: S3Settings):
        from minio import Minio
        self.settings = settings
        self.client = Minio(settings.endpoint, settings.access_key, settings.secret_key,
                            secure=settings.secure, region=settings.region)
        # presigning is local arithmetic: a second client only changes the signed host
        self.signer = Minio(settings.pod_endpoint, settings.access_key, settings.secret_key,
                            secure=settings.secure, region=settings.region) \
            if settings.pod_endpoint else self.client
        self._bucket_checked = False

    @property
    def expiry(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.settings.url_expiry_s)

    def check_bucket(self) -> None:
        if self._bucket_checked:
            return
        bucket = self.settings.bucket
        try:
            exists = self.client.bucket_exists(bucket)
        except Exception as exc:
            raise LaunchError(f'kubernetes backend: cannot reach the object store at '
                              f'{self.settings.endpoint}: {exc}', retryable=True) from exc
        if not exists:
            raise LaunchError(f'kubernetes backend: bucket {bucket!r} does not exist at '
                              f'{self.settings.endpoint} (LOCALRUNNER_S3_BUCKET)', retryable=False)
        self._bucket_checked = True

    def attempt_prefix(self, run_id: str, attempt_id: str) -> str:
        return f'{self.settings.prefix.strip("/")}/{run_id}/{attempt_id}'

    # ------------------------------------------------------------ in

    def stage_in(self, spec: LaunchSpec, prefix: str) -> Staging:
        """Uploads what the task reads; returns the pod's download list and upload URL."""
        self.check_bucket()
        for path, read_only in staged_paths(spec).items():
            if not read_only:
                os.makedirs(path, exist_ok=True)
            elif not os.path.exists(path):
                raise LaunchError(f'task {spec.task}: input {path} does not exist', retryable=False)
        try:
            staging, uploads = plan_staging(spec, os.path.isdir,
                                            lambda name: self.get_url(f'{prefix}/{name}'),
                                            lambda name: self.put_url(f'{prefix}/{name}'))
        except ValueError as exc:
            raise LaunchError(f'task {spec.task}: {exc}', retryable=False) from None
        skip = {os.path.abspath(spec.log_path)} if spec.log_path else set()
        for path, name, is_dir in uploads:
            if is_dir:
                self._put_tree(path, f'{prefix}/{name}', skip)
            else:
                self.client.fput_object(self.settings.bucket, f'{prefix}/{name}', path,
                                        content_type='application/octet-stream')
        return staging

    def _put_tree(self, folder: str, key: str, skip: set[str]) -> None:
        def keep(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
            full = os.path.normpath(os.path.join(folder, info.name))
            return None if full in skip else info

        with tempfile.NamedTemporaryFile(suffix='.tar.gz') as tmp:
            # dereference: a link into the cache or elsewhere on this machine means nothing there
            with tarfile.open(fileobj=tmp, mode='w:gz', dereference=True) as tar:
                tar.add(folder, arcname='.', filter=keep)
            tmp.flush()
            self.client.fput_object(self.settings.bucket, key, tmp.name,
                                    content_type='application/gzip')

    def get_url(self, key: str) -> str:
        return self.signer.presigned_get_object(self.settings.bucket, key, expires=self.expiry)

    def put_url(self, key: str) -> str:
        return self.signer.presigned_put_object(self.settings.bucket, key, expires=self.expiry)

    # ------------------------------------------------------------ out

    def stage_out(self, prefix: str, staging: Staging, skip: set[str]) -> None:
        """Unpacks the pod's out.tar.gz into the writable host folders. Raises
        FileNotFoundError when the pod uploaded nothing."""
        from minio.error import S3Error
        with tempfile.NamedTemporaryFile(suffix='.tar.gz') as tmp:
            try:
                self.client.fget_object(self.settings.bucket, f'{prefix}/{OUT_ARCHIVE}', tmp.name)
            except S3Error as exc:
                if exc.code in ('NoSuchKey', 'NoSuchObject'):
                    raise FileNotFoundError('the pod uploaded no outputs') from None
                raise
            with tarfile.open(tmp.name, 'r:gz') as tar:
                members = tar.getmembers()
                for root in staging.upload_paths:
                    _extract_under(tar, members, os.path.abspath(root), skip)

    def cleanup(self, prefix: str) -> None:
        from minio.deleteobjects import DeleteObject
        objects = [DeleteObject(o.object_name) for o in
                   self.client.list_objects(self.settings.bucket, prefix=prefix + '/', recursive=True)]
        if objects:
            for _ in self.client.remove_objects(self.settings.bucket, objects):
                pass   # errors are yielded; leftovers only cost space under the prefix


def _extract_under(tar: tarfile.TarFile, members: list, root: str, skip: set[str]) -> None:
    """The archive's members below the writable folder `root` (absolute names, as the pod
    packs them), extracted into `root` and nowhere else; never the log this process writes.
    A pod is not trusted with this machine's files: with `root` as the destination,
    tarfile's 'data' filter, applied member by member as they land, refuses absolute links,
    links out of `root`, and any member that an earlier member's link would carry out of it
    (raises: the attempt fails). Without that filter (Python < 3.10.12) links are dropped."""
    has_filter = hasattr(tarfile, 'data_filter')
    chosen = []
    for member in members:
        full = '/' + os.path.normpath(member.name).lstrip('/')
        if full in skip or not (full + '/').startswith(root.rstrip('/') + '/'):
            continue
        if (member.issym() or member.islnk()) and not has_filter:
            continue
        local = copy.copy(member)
        local.name = os.path.relpath(full, root)
        if member.islnk():               # a hard link names another member of the archive
            target = '/' + os.path.normpath(member.linkname).lstrip('/')
            local.linkname = os.path.relpath(target, root)
        chosen.append(local)
    tar.extractall(root, members=chosen, **({'filter': 'data'} if has_filter else {}))
