"""Container components (placeholders: inputs, output paths, IfPresent, Concat) and the importer.
Container components run their command on the host with the subprocess backend (the image is
not pulled), so the commands use only `sh` and coreutils."""
from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Output, OutputPath

from tests.conformance.sources._components import BASE

IMAGE = 'alpine:3.19'


@dsl.container_component
def greet(name: str, greeting: OutputPath(str)):
    return dsl.ContainerSpec(
        image=IMAGE, command=['sh', '-c'],
        args=['mkdir -p "$(dirname "$1")" && printf "hello %s" "$0" > "$1"', name, greeting])


@dsl.container_component
def args_echo(listing: OutputPath(str), suffix: Optional[str] = None):
    """$0 is the output path; the rest of the arguments are written to it."""
    return dsl.ContainerSpec(
        image=IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$0")" && printf "[%s]" "$*" > "$0"'],
        args=[listing, dsl.IfPresentPlaceholder(input_name='suffix', then=['--suffix', suffix]),
              dsl.ConcatPlaceholder(['x-', 'y'])])


@dsl.container_component
def write_lines(count: int, data: Output[Dataset]):
    return dsl.ContainerSpec(
        image=IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$1")" && seq 1 "$0" > "$1"'],
        args=[count, data.path])


@dsl.container_component
def no_inputs():
    return dsl.ContainerSpec(image=IMAGE, command=['echo', 'no inputs, no outputs'])


@dsl.component(base_image=BASE)
def count_lines(data: Input[Dataset]) -> int:
    with open(data.path) as f:
        return len(f.read().splitlines())


@dsl.pipeline(name='container-components')
def containers(who: str = 'conformance') -> NamedTuple('Outputs', greeting=str, with_suffix=str, without=str,
                                                       lines=int):
    g = greet(name=who)
    with_suffix = args_echo(suffix='S')
    without = args_echo()
    w = write_lines(count=4)
    n = count_lines(data=w.outputs['data'])                            # a container's artifact, read by Python
    no_inputs()
    outputs = NamedTuple('Outputs', greeting=str, with_suffix=str, without=str, lines=int)
    return outputs(g.outputs['greeting'], with_suffix.outputs['listing'], without.outputs['listing'], n.output)


@dsl.component(base_image=BASE)
def read_imported(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f'{f.read()}|{data.metadata.get("source")}'


@dsl.pipeline(name='importer')
def importer(uri: str) -> NamedTuple('Outputs', text=str, imported=Dataset):
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False,
                       metadata={'source': 'conformance'})
    r = read_imported(data=imp.output)
    outputs = NamedTuple('Outputs', text=str, imported=Dataset)
    return outputs(r.output, imp.output)


CASES = {
    'container_components': containers,
    'importer': importer,
}
