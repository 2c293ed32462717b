"""The values that flow through a run: artifacts, task outcomes, task records."""
from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from localrunner.spec.views import Task

LEAF_KINDS = frozenset({'container', 'importer'})


class State(str, enum.Enum):
    RUNNING = 'RUNNING'          # not final: started (or waiting), not yet ended
    SUCCEEDED = 'SUCCEEDED'
    CACHED = 'CACHED'
    FAILED = 'FAILED'
    SKIPPED = 'SKIPPED'
    CANCELED = 'CANCELED'

    @property
    def ok(self) -> bool:
        return self in (State.SUCCEEDED, State.CACHED)

    @property
    def final(self) -> bool:
        return self is not State.RUNNING


def local_path(uri: str) -> Optional[str]:
    """The host path of a URI, when it is local (KFP's local convention: path == uri)."""
    if uri.startswith('file://'):
        return uri[len('file://'):]
    if uri.startswith('/'):
        return uri
    return None


@dataclasses.dataclass
class Artifact:
    name: str
    schema_title: str
    schema_version: str
    uri: str
    metadata: dict = dataclasses.field(default_factory=dict)
    digest: Optional[str] = None          # content digest in the CAS (None: nothing at the path)
    kind: Optional[str] = None            # 'file' | 'tree' | None

    @property
    def path(self) -> Optional[str]:
        return local_path(self.uri)

    def runtime(self) -> dict:
        """The form KFP's executor reads in executor input."""
        return {'name': self.name,
                'type': {'schemaTitle': self.schema_title, 'schemaVersion': self.schema_version},
                'uri': self.uri, 'metadata': self.metadata}

    def result(self) -> dict:
        return {'name': self.name, 'type': self.schema_title, 'uri': self.uri, 'path': self.path,
                'digest': self.digest, 'metadata': self.metadata}

    def key_form(self) -> dict:
        """What enters a consumer's cache key: type, metadata, content; never uri or path."""
        return {'type': self.schema_title, 'version': self.schema_version,
                'metadata': self.metadata, 'digest': self.digest, 'kind': self.kind}


@dataclasses.dataclass
class Outcome:
    """What a task (leaf or DAG) ended with."""
    state: State
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, list[Artifact]] = dataclasses.field(default_factory=dict)
    error: Optional[str] = None
    pending: Optional[str] = None         # dry run: a task whose outputs are unknown (would run) decides them


@dataclasses.dataclass
class TaskRecord:
    """One line of the result contract. Created RUNNING when the task starts; Run.end() is
    the only way it reaches a final state."""
    name: str
    display_name: str
    kind: str                              # 'container' | 'importer' | 'dag' | 'loop' | 'condition'
    component: str
    state: State = State.RUNNING
    outputs: Optional[Outcome] = None
    started: Optional[float] = None
    finished: Optional[float] = None
    attempts: int = 0
    cached_from: Optional[dict] = None
    cache_key: Optional[str] = None
    error: Optional[str] = None
    task_dir: Optional[str] = None
    logs: list[str] = dataclasses.field(default_factory=list)
    prediction: Optional[str] = None       # dry run: CACHED | WOULD_RUN | MAY_RUN
    reason: Optional[str] = None           # why it was predicted so / skipped
    upstream: list[str] = dataclasses.field(default_factory=list)   # sibling tasks it waits for (IR keys)

    @classmethod
    def of(cls, name: str, task: 'Task', kind: str, **fields: Any) -> 'TaskRecord':
        """The record of the IR task `task` (its view) run as `name` (its display name,
        component and upstream tasks come from the IR; without a taskInfo.name, `name`)."""
        display = fields.pop('display_name', None) or task.display_name or name
        return cls(name=name, display_name=display, kind=kind, component=task.component,
                   upstream=sorted(task.upstreams), **fields)

    @property
    def leaf(self) -> bool:
        return self.kind in LEAF_KINDS

    def to_json(self) -> dict:
        out = self.outputs or Outcome(self.state)
        d = {
            'name': self.name,
            'display_name': self.display_name,
            'state': self.state.value,
            'type': self.kind,
            'component': self.component,
            'outputs': {
                'parameters': out.parameters,
                'artifacts': {k: [a.result() for a in v] for k, v in out.artifacts.items()},
            },
            'attempts': self.attempts,
            'duration_s': (round(self.finished - self.started, 3)
                           if self.started and self.finished else None),
        }
        if self.cached_from:
            d['cached_from'] = self.cached_from
        if self.cache_key:
            d['cache_key'] = self.cache_key
        if self.error:
            d['error'] = self.error
        if self.logs:
            d['logs'] = self.logs
        if self.prediction:
            d['prediction'] = self.prediction
        if self.reason:
            d['reason'] = self.reason
        d['upstream'] = self.upstream
        return d
