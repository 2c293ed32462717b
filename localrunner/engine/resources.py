"""A task's cpu, memory and accelerator requests, from the IR's container resources."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from localrunner.backends.base import Resources
from localrunner.engine.placeholders import RunContext, substitute
from localrunner.units import parse_bytes, parse_cpu

if TYPE_CHECKING:
    from localrunner.spec.views import Container


def resources_of(container: 'Container', executor_input: dict, ctx: RunContext) -> Resources:
    """The container's quantities (spec/reader.py reads them: the string KFP writes wins over
    its legacy number) with the placeholders a pipeline parameter leaves resolved."""
    r = container.resources

    def resolved(text: Optional[str]) -> Optional[str]:
        return substitute(text, executor_input, ctx) if text is not None and '{{$' in text else text

    acc = r.accelerator
    acc_type = resolved(acc.type) if acc is not None else None
    count = 0
    if acc_type:
        count = acc.count if acc.count is not None else resolved(acc.count_text)
        count = int(float(count)) if count not in (None, '') else 1
    return Resources(cpu_limit=parse_cpu(resolved(r.cpu_limit)),
                     memory_limit=parse_bytes(resolved(r.memory_limit), 'memory quantity'),
                     cpu_request=parse_cpu(resolved(r.cpu_request)),
                     memory_request=parse_bytes(resolved(r.memory_request), 'memory quantity'),
                     accelerator_type=acc_type or None, accelerator_count=count)
