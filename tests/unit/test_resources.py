"""resources.py: a task's cpu, memory and accelerator requests from the IR's container resources
(the forms kfp/compiler/pipeline_spec_builder.py writes)."""
import pytest

from localrunner.engine.placeholders import RunContext
from localrunner.engine.resources import resources_of
from localrunner.errors import UsageError
from tests.ir_views import container_view

CTX = RunContext('job', 'job-id', 'task', 'task-id', 'T', '/root', '/ws')
EXECUTOR_INPUT = {'inputs': {'parameterValues': {'pipelinechannel--cpu': '2', 'pipelinechannel--mem': '1Gi',
                                                 'pipelinechannel--word': 'lots',
                                                 'pipelinechannel--gpu': 'nvidia.com/gpu', 'pipelinechannel--n': 2}},
                  'outputs': {}}


def of(resources: dict):
    """resources_of the container with these resources, as the IR writes them."""
    return resources_of(container_view({'image': 'python:3.11', 'resources': resources}), EXECUTOR_INPUT, CTX)


def test_nothing_asked():
    r = of({})
    assert (r.cpu_limit, r.memory_limit, r.cpu_request, r.memory_request) == (None, None, None, None)
    assert r.accelerator_type is None and r.accelerator_count == 0
    assert resources_of(container_view({'image': 'x'}), EXECUTOR_INPUT, CTX) == r


def test_string_forms_win_over_the_legacy_numbers():
    # what set_cpu_limit('500m').set_memory_limit('512Mi') compiles to
    r = of({'cpuLimit': 0.5, 'memoryLimit': 0.536870912, 'resourceCpuLimit': '500m', 'resourceMemoryLimit': '512Mi'})
    assert r.cpu_limit == 0.5 and r.memory_limit == 512 * 2**20
    r = of({'resourceCpuRequest': '250m', 'cpuRequest': 9, 'resourceMemoryRequest': '128M', 'memoryRequest': 9})
    assert r.cpu_request == 0.25 and r.memory_request == 128 * 10**6


@pytest.mark.parametrize('legacy,cpu,memory', [({'cpuLimit': 2, 'memoryLimit': 1.5}, 2.0, 1_500_000_000),
                                               ({'cpuLimit': 0.5, 'memoryLimit': 0.128}, 0.5, 128_000_000),
                                               ({'cpuLimit': 1, 'memoryLimit': 1.073741824}, 1.0, 2**30)])
def test_legacy_numbers_alone_cpu_in_cores_memory_in_gigabytes(legacy, cpu, memory):
    r = of(legacy)
    assert r.cpu_limit == cpu and r.memory_limit == memory


def test_an_empty_string_falls_back_to_the_number():
    assert of({'resourceCpuLimit': '', 'cpuLimit': 2}).cpu_limit == 2.0


def test_quantities_set_from_pipeline_parameters():
    r = of({'resourceCpuLimit': "{{$.inputs.parameters['pipelinechannel--cpu']}}",
            'resourceMemoryLimit': "{{$.inputs.parameters['pipelinechannel--mem']}}",
            'accelerator': {'resourceType': "{{$.inputs.parameters['pipelinechannel--gpu']}}",
                            'resourceCount': "{{$.inputs.parameters['pipelinechannel--n']}}"}})
    assert r.cpu_limit == 2.0 and r.memory_limit == 2**30
    assert r.accelerator_type == 'nvidia.com/gpu' and r.accelerator_count == 2


@pytest.mark.parametrize('accelerator,kind,count', [
    # set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1): new and legacy fields (int64 as text)
    ({'count': '1', 'resourceCount': '1', 'resourceType': 'nvidia.com/gpu', 'type': 'nvidia.com/gpu'},
     'nvidia.com/gpu', 1),
    ({'resourceType': 'NVIDIA_TESLA_T4', 'resourceCount': '2', 'type': 'NVIDIA_TESLA_K80', 'count': '4'},
     'NVIDIA_TESLA_T4', 2),                                     # the new fields win
    ({'type': 'nvidia.com/gpu', 'count': '3'}, 'nvidia.com/gpu', 3),   # legacy only
    ({'type': 'nvidia.com/gpu', 'count': 3}, 'nvidia.com/gpu', 3),
    ({'resourceType': 'nvidia.com/gpu'}, 'nvidia.com/gpu', 1),  # a type alone asks for one
    ({'resourceCount': '2'}, None, 0),                          # a count without a type asks for nothing
    ({}, None, 0),
])
def test_accelerators(accelerator, kind, count):
    r = of({'accelerator': accelerator})
    assert (r.accelerator_type, r.accelerator_count) == (kind, count)


@pytest.mark.parametrize('resources,what', [({'resourceCpuLimit': 'lots'}, 'cpu'),
                                            ({'resourceMemoryLimit': '1X'}, 'memory')])
def test_a_bad_constant_quantity_is_refused_when_the_pipeline_is_read(resources, what):
    with pytest.raises(UsageError, match=f'resources.{next(iter(resources))}: not a {what}'):
        of(resources)


@pytest.mark.parametrize('resources,what', [
    ({'resourceCpuLimit': "{{$.inputs.parameters['pipelinechannel--word']}}"}, 'cpu'),
    ({'resourceMemoryLimit': "{{$.inputs.parameters['pipelinechannel--word']}}"}, 'memory')])
def test_a_bad_quantity_from_a_parameter_is_a_value_error_naming_it(resources, what):
    with pytest.raises(ValueError, match=what):
        of(resources)


def test_gpu_ids_are_never_part_of_what_resources_of_decides():
    assert of({'accelerator': {'resourceType': 'nvidia.com/gpu', 'resourceCount': '2'}}).gpu_ids == ()
