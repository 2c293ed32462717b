"""dsl.importer: make an artifact out of an existing URI (a local path or file:// URI here).

Its identity downstream is its content digest, so a file changed in place is a new input
and identical bytes elsewhere are the same input.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from typing import TYPE_CHECKING, Any, Mapping

from localrunner.engine.model import Artifact, Outcome, State, TaskRecord, local_path
from localrunner.layout import PathEscape, split_task_path, within

if TYPE_CHECKING:
    from localrunner.engine.runtime import Run
    from localrunner.spec.views import Importer, Task

_WHOLE_PARAM = re.compile(r"^\{\{\$\.inputs\.parameters\[['\"]{1,2}(.+?)['\"]{1,2}\]\}\}$")
_ANY_PARAM = re.compile(r"\{\{\$\.inputs\.parameters\[['\"]{1,2}(.+?)['\"]{1,2}\]\}\}")


def _resolve_metadata(value: Any, params: dict) -> Any:
    if isinstance(value, Mapping):
        return {_resolve_metadata(k, params): _resolve_metadata(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_metadata(v, params) for v in value]
    if isinstance(value, str):
        whole = _WHOLE_PARAM.match(value)
        if whole:
            return params.get(whole.group(1))
        return _ANY_PARAM.sub(lambda m: str(params.get(m.group(1), '')), value)
    return value


async def run_importer(run: 'Run', name: str, task: 'Task', importer: 'Importer', params: dict) -> Outcome:
    record = TaskRecord.of(name, task, 'importer', display_name=task.display_name or task.key, started=time.time())
    run.register(record)
    uri = importer.uri if importer.uri is not None else params.get(importer.uri_parameter or 'uri')
    if not uri:
        return run.end(record, Outcome(State.FAILED, error='importer: artifact URI is empty'))
    uri = str(uri)
    metadata = _resolve_metadata(importer.metadata, params)
    path = local_path(uri)
    if path is not None:
        uri = path            # KFP's executor reads a local artifact at its uri: give it the plain path
    elif '://' not in uri:
        path = os.path.abspath(uri)
        uri = path
    digest = kind = None
    if path is not None:
        if not os.path.exists(path):
            return run.end(record, Outcome(State.FAILED, error=f'importer: {path} does not exist'))
        if importer.download_to_workspace:
            try:
                target = within(os.path.join(run.workspace, 'imports'), *split_task_path(name),
                                os.path.basename(path.rstrip('/')) or 'artifact', what='importer')
            except PathEscape as e:
                return run.end(record, Outcome(State.FAILED, error=f'refused: {e}'))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.isdir(path):
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                shutil.copy2(path, target)
            path = uri = target
        digest, kind = await run.in_thread(run.cache.digest_input, path)
        run.warn_once(f'{name}: imports a local path ({path}); on a KFP cluster the importer needs a '
                      f'gs://, s3:// or minio:// URI (parity warning)')
    else:
        run.warn(f'{name}: importer URI {uri} is not local; it is passed on as a URI only', task=name)
    artifact = Artifact(name='artifact', schema_title=importer.schema_title, schema_version=importer.schema_version,
                        uri=uri, metadata=metadata, digest=digest, kind=kind)
    if run.options.dry_run:
        # an importer runs in every run; its output is known now (the content digest), so
        # what reads it is predicted by its own key
        record.prediction = 'WOULD_RUN'
        record.reason = f'imports {uri}' + (f' (content {digest[:12]})' if digest else '')
    return run.end(record, Outcome(State.SUCCEEDED, artifacts={'artifact': [artifact]}))
