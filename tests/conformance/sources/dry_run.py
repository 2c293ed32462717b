"""Pipelines for the dry-run exactness cases: a first run fills the cache, something changes
(a parameter, an input file, a component's code, an image), then `--dry-run` predicts each
task (CACHED / WOULD_RUN / MAY_RUN) and the real run that follows must bear it out."""
from kfp import dsl
from kfp.dsl import Dataset, Input

from tests.conformance.build import Compile, Replace
from tests.conformance.sources._components import BASE, add, make_ints, square, total


@dsl.component(base_image=BASE)
def say(text: str) -> str:
    return text


@dsl.pipeline(name='dry-run-params')
def params_chain(x: int = 1):
    a = add(a=x, b=1)
    add(a=a.output, b=1)                          # downstream of the change
    add(a=5, b=5)                                 # untouched


@dsl.component(base_image=BASE)
def read_text(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name='dry-run-input-file')
def input_file(uri: str):
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
    got = read_text(data=imp.output)
    say(text=got.output)
    say(text='untouched')


def _step(version: int):
    """The same component (name, interface) in two versions of its code."""
    if version == 1:
        @dsl.component(base_image=BASE)
        def step(x: int) -> int:
            return x * 2
    else:
        @dsl.component(base_image=BASE)
        def step(x: int) -> int:
            return x + x                          # new code, same result for every x
    return step


def _code_pipeline(version: int):
    step = _step(version)

    @dsl.pipeline(name='dry-run-code')
    def code(x: int = 3):
        s = step(x=x)
        add(a=s.output, b=1)                      # the same input after the change: served
        add(a=x, b=100)                           # untouched
    return code


@dsl.container_component
def tool(word: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image='alpine:3.19', args=[word, out],
                             command=['sh', '-c', 'mkdir -p "$(dirname "$1")"; printf %s "$0" > "$1"'])


@dsl.pipeline(name='dry-run-image')
def image():
    t = tool(word='w')
    say(text=t.outputs['out'])
    say(text='untouched')


@dsl.pipeline(name='dry-run-inner')
def inner(x: int) -> int:
    changed = add(a=x, b=1)
    add(a=7, b=7)                                 # inside the nested pipeline, untouched
    return changed.output


@dsl.pipeline(name='dry-run-nested')
def nested(x: int = 1, y: int = 1):
    i = inner(x=x)
    add(a=i.output, b=y)
    add(a=y, b=0)


@dsl.pipeline(name='dry-run-loop')
def loop_upstream(n: int = 2):
    ints = make_ints(n=n)
    with dsl.ParallelFor(ints.output) as i:
        sq = square(x=i)
    total(xs=dsl.Collected(sq.output))
    square(x=9)                                   # untouched


@dsl.pipeline(name='dry-run-conditions')
def conditions(n: int = 1):
    with dsl.If(n == 1):
        say(text='one')
    with dsl.Elif(n == 2):
        say(text='two')
    with dsl.Else():
        say(text='other')
    say(text='always')


@dsl.component(base_image=BASE)
def status_state(status: dsl.PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline(name='dry-run-exit-handler')
def exit_handler(x: int = 1):
    s = status_state()
    with dsl.ExitHandler(s):
        add(a=x, b=1)
        add(a=2, b=2)


CASES = {
    'dryrun_param_change': params_chain,
    'dryrun_input_file_edit': input_file,
    'dryrun_code_change': {'pipeline.yaml': _code_pipeline(1), 'pipeline-rerun.yaml': _code_pipeline(2)},
    'dryrun_image_change': {'pipeline.yaml': image, 'pipeline-rerun.yaml': Compile(image, edit=(
        Replace('image: alpine:3.19', 'image: alpine:3.20'),))},
    'dryrun_nested': nested,
    'dryrun_parallelfor_upstream': loop_upstream,
    'dryrun_conditions': conditions,
    'dryrun_exit_handler': exit_handler,
}
