"""A task's cpu, memory and accelerator requests, from the IR's container resources."""
from __future__ import annotations

from localrunner.backends.base import Resources
from localrunner.engine.placeholders import RunContext, substitute
from localrunner.units import parse_bytes, parse_cpu


def resources_of(container: dict, executor_input: dict, ctx: RunContext) -> Resources:
    """KFP writes each quantity twice: a string (resourceCpuLimit: '500m', possibly a
    placeholder when set from a pipeline parameter) and a legacy number (cpuLimit: 0.5,
    memoryLimit in GB); the string wins (kfp/compiler/pipeline_spec_builder.py)."""
    r = container.get('resources', {}) or {}

    def value(string_key: str, number_key: str, unit_giga: bool = False):
        raw = r.get(string_key)
        if isinstance(raw, str) and '{{$' in raw:
            raw = substitute(raw, executor_input, ctx)
        if raw not in (None, ''):
            return raw
        number = r.get(number_key)
        if number is None:
            return None
        return f'{number}G' if unit_giga else number

    acc = r.get('accelerator', {}) or {}
    acc_type = acc.get('resourceType') or acc.get('type')
    if isinstance(acc_type, str) and '{{$' in acc_type:
        acc_type = substitute(acc_type, executor_input, ctx)
    count = acc.get('resourceCount', acc.get('count'))
    if isinstance(count, str) and '{{$' in count:
        count = substitute(count, executor_input, ctx)
    count = int(float(count)) if count not in (None, '') else (1 if acc_type else 0)
    return Resources(cpu_limit=parse_cpu(value('resourceCpuLimit', 'cpuLimit')),
                     memory_limit=parse_bytes(value('resourceMemoryLimit', 'memoryLimit', True), 'memory quantity'),
                     cpu_request=parse_cpu(value('resourceCpuRequest', 'cpuRequest')),
                     memory_request=parse_bytes(value('resourceMemoryRequest', 'memoryRequest', True),
                                                'memory quantity'),
                     accelerator_type=acc_type or None, accelerator_count=count if acc_type else 0)
