"""Frozen, typed views of a compiled KFP v2 pipeline (the IR), built once when it is loaded
(spec/reader.py): records (records.py: a frozen dataclass's contract, cheaper to import).
Every section is present (empty when absent in the file); names are as written in the IR;
`path` fields say where a thing is in the IR, for messages."""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Iterator, Mapping, Optional

from localrunner.records import Record, record


def frozen(mapping: dict) -> Mapping:
    return types.MappingProxyType(mapping)


@record
class ParameterDef(Record):
    """A declared input or output parameter (inputDefinitions/outputDefinitions.parameters)."""
    name: str
    type: str                       # parameterType: STRING, NUMBER_INTEGER, ..., TASK_FINAL_STATUS
    optional: bool = False
    has_default: bool = False
    default: Any = None             # defaultValue (any JSON value) when has_default


@record
class ArtifactDef(Record):
    name: str
    schema_title: str = 'system.Artifact'
    schema_version: str = '0.0.1'
    is_list: bool = False
    optional: bool = False


@record
class Interface(Record):
    """inputDefinitions or outputDefinitions."""
    parameters: Mapping[str, ParameterDef] = dataclasses.field(default_factory=lambda: frozen({}))
    artifacts: Mapping[str, ArtifactDef] = dataclasses.field(default_factory=lambda: frozen({}))
    # the section exactly as the IR writes it ({} when absent), a plain dict, never modified:
    # cache keys hash it byte for byte (caching.key_parts, custom_key_parts), so it is handed
    # on as written rather than rebuilt from the typed fields
    as_written: Mapping = dataclasses.field(default_factory=dict)


@record
class ParameterInput(Record):
    """Where a task input parameter's value comes from. kind: 'component_input' (`name` of
    the DAG's input), 'task_output' (`producer`'s output `name`), 'constant' (`constant`),
    'final_status' (of `producer`)."""
    kind: str
    name: str = ''
    producer: str = ''
    constant: Any = None
    selector: str = ''              # parameterExpressionSelector (CEL), applied to the value


@record
class ArtifactInput(Record):
    """kind: 'component_input' (`name` of the DAG's input) or 'task_output' (`producer`'s `name`)."""
    kind: str
    name: str
    producer: str = ''


@record
class Loop(Record):
    """dsl.ParallelFor: parameterIterator or artifactIterator."""
    over_artifacts: bool
    item_input: str                 # the body's input that receives one item
    items_input: str = ''           # the task input holding the items (items.inputParameter/inputArtifact)
    raw_items: Optional[str] = None  # items.raw: a JSON list, for a loop over a constant
    parallelism: int = 0            # iteratorPolicy.parallelismLimit; 0 = unlimited


@record
class Retry(Record):
    max_retries: int = 0
    backoff_s: float = 0.0
    factor: float = 2.0
    max_backoff_s: Optional[float] = None


@record
class Task(Record):
    key: str
    path: str                       # where it is in the IR, e.g. 'root.dag.tasks.train'
    component: str                  # componentRef.name
    display_name: str               # taskInfo.name ('' when not written)
    parameters: Mapping[str, ParameterInput]
    artifacts: Mapping[str, ArtifactInput]
    dependent_tasks: tuple[str, ...] = ()
    condition: str = ''             # triggerPolicy.condition (CEL)
    strategy: str = ''              # triggerPolicy.strategy
    caching: Optional[Mapping] = None   # cachingOptions as written (None when absent)
    cache_enabled: bool = False     # cachingOptions.enableCache is true (reader.py says why only then)
    cache_key: str = ''             # cachingOptions.cacheKey: set_caching_options(cache_key=...)
    retry: Optional[Retry] = None
    loop: Optional[Loop] = None

    @property
    def upstreams(self) -> frozenset[str]:
        """Tasks of the same DAG this task waits for: dependentTasks and data producers."""
        producers = [p.producer for p in self.parameters.values() if p.producer]
        producers += [a.producer for a in self.artifacts.values() if a.producer]
        return frozenset(self.dependent_tasks) | frozenset(producers)


@record
class OutputSelector(Record):
    producer: str                   # producerSubtask
    key: str                        # its outputParameterKey / outputArtifactKey


@record
class Dag(Record):
    tasks: Mapping[str, Task]
    output_parameters: Mapping[str, tuple[OutputSelector, ...]]   # first selector with a value wins
    output_artifacts: Mapping[str, tuple[OutputSelector, ...]]


@record
class Accelerator(Record):
    type: str
    count: Optional[int]            # None when the count is a placeholder (known when resolved)
    count_text: str                 # as written


@record
class ContainerResources(Record):
    """Quantities as written (strings win over KFP's legacy numbers; placeholders stay)."""
    cpu_limit: Optional[str] = None
    cpu_request: Optional[str] = None
    memory_limit: Optional[str] = None
    memory_request: Optional[str] = None
    accelerator: Optional[Accelerator] = None


@record
class Container(Record):
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str]
    resources: ContainerResources


@record
class Importer(Record):
    uri: Optional[str]              # artifactUri.constant
    uri_parameter: str              # artifactUri.runtimeParameter (an input of the importer)
    schema_title: str
    schema_version: str
    metadata: Mapping
    reimport: bool = False
    download_to_workspace: bool = False


@record
class Executor(Record):
    label: str
    container: Optional[Container] = None
    importer: Optional[Importer] = None


@record
class Component(Record):
    name: str                       # 'root' for the pipeline itself
    path: str                       # 'root' or 'components.<name>'
    inputs: Interface
    outputs: Interface
    executor_label: str = ''        # '' for a DAG
    dag: Optional[Dag] = None


@record
class PipelineView(Record):
    name: str
    root: Component
    components: Mapping[str, Component]
    executors: Mapping[str, Executor]
    platform: Mapping[str, Mapping]     # executor label -> kfp-kubernetes config (shape-checked)

    def dags(self) -> Iterator[Component]:
        """The root and every DAG component."""
        yield self.root
        yield from (c for c in self.components.values() if c.dag is not None)

    def executor_of(self, component: Component) -> Optional[Executor]:
        return self.executors.get(component.executor_label) if component.executor_label else None
