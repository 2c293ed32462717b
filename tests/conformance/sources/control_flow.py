"""Control flow: dsl.If/Elif/Else, ParallelFor (raw list, parameter, upstream output, item fields,
nested, parallelism), dsl.Collected, nested pipelines, ExitHandler with PipelineTaskFinalStatus,
dsl.OneOf, .after(), ignore_upstream_failure, set_retry, a failing pipeline."""
from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output, PipelineTaskFinalStatus

from tests.conformance.sources._components import BASE, add, fail, make_ints, square, total


@dsl.component(base_image=BASE)
def say(text: str) -> str:
    return text


@dsl.component(base_image=BASE)
def pick(n: int) -> int:
    return n


@dsl.component(base_image=BASE)
def pair(a: int, b: str) -> str:
    return f'{a}{b}'


@dsl.component(base_image=BASE)
def join_list(items: list) -> str:
    return ','.join(str(i) for i in items)


# ---------------------------------------------------------------------------- conditions


@dsl.pipeline(name='conditions')
def conditions(n: int = 0, word: str = 'plain', flag: bool = False) -> str:
    with dsl.If(n > 3, name='big'):
        big = say(text='big')
        with dsl.If(word == 'nested', name='big-and-nested'):          # a condition in a condition
            say(text='big and nested')
    with dsl.Elif(n == 2, name='two'):
        two = say(text='two')
    with dsl.Else(name='small'):
        small = say(text='small')
    picked = pick(n=n)
    with dsl.If(picked.output >= 2.5, name='output-ge-2-5'):          # an int output against a double
        say(text='picked >= 2.5')
    with dsl.If(flag == True, name='flag'):  # noqa: E712  (the DSL needs the comparison)
        say(text='flag')
    with dsl.If(word != 'plain', name='not-plain'):
        say(text=word)
    return dsl.OneOf(big.output, two.output, small.output)


# ---------------------------------------------------------------------------- loops


@dsl.pipeline(name='loops')
def loops(records: list, items: list = [3, 4], count: int = 3) -> NamedTuple(
        'Outputs', raw=List[str], param=List[int], upstream=int, fields=List[str], cross=List[List[str]]):
    with dsl.ParallelFor(['x', 'y', 'z']) as letter:                   # a raw list
        raw = say(text=letter)
    with dsl.ParallelFor(items) as item:                               # a pipeline parameter
        sq = square(x=item)
    ints = make_ints(n=count)
    with dsl.ParallelFor(ints.output, parallelism=1) as i:             # an upstream output, one at a time
        up = square(x=i)
    up_total = total(xs=dsl.Collected(up.output))
    # fields of each item; the records come from params.json (parameters.py: why no dict default)
    with dsl.ParallelFor(records) as rec:
        fields = pair(a=rec.n, b=rec.label)
    with dsl.ParallelFor([1, 2]) as outer:                             # nested loops
        with dsl.ParallelFor(['u', 'v']) as inner:
            cross = pair(a=outer, b=inner)
    outputs = NamedTuple('Outputs', raw=List[str], param=List[int], upstream=int, fields=List[str],
                         cross=List[List[str]])
    return outputs(dsl.Collected(raw.output), dsl.Collected(sq.output), up_total.output,
                   dsl.Collected(fields.output), dsl.Collected(cross.output))


@dsl.pipeline(name='loop-edge-cases')
def loop_edges() -> NamedTuple('Outputs', empty=int, filtered=List[int]):
    nothing = make_ints(n=0)
    with dsl.ParallelFor(nothing.output) as z:                         # zero iterations
        never = square(x=z)
    empty = total(xs=dsl.Collected(never.output))
    with dsl.ParallelFor([1, 2, 3, 4]) as j:                           # a condition inside a loop
        with dsl.If(j != 2):
            kept = square(x=j)
    outputs = NamedTuple('Outputs', empty=int, filtered=List[int])
    return outputs(empty.output, dsl.Collected(kept.output))


# ---------------------------------------------------------------------------- nested pipelines


@dsl.component(base_image=BASE)
def write(text: str, out: Output[Dataset]):
    with open(out.path, 'w') as f:
        f.write(text)


@dsl.component(base_image=BASE)
def read(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.component(base_image=BASE)
def concat(a: str, b: str) -> str:
    return a + b


@dsl.pipeline(name='inner')
def inner(x: int, data: Input[Dataset], suffix: str = '-inner') -> NamedTuple('InnerOut', total=int, made=Dataset):
    got = read(data=data)
    s = add(a=x, b=10)
    made = write(text=concat(a=got.output, b=suffix).output)
    outputs = NamedTuple('InnerOut', total=int, made=Dataset)
    return outputs(s.output, made.outputs['out'])


@dsl.pipeline(name='middle')
def middle(x: int, data: Input[Dataset]) -> Dataset:
    return inner(x=x, data=data, suffix='-middle').outputs['made']


@dsl.pipeline(name='nested-pipelines')
def nested(x: int = 1) -> NamedTuple('Outputs', total=int, made=Dataset, deep=str, looped=List[int]):
    seed = write(text='seed')
    one = inner(x=x, data=seed.outputs['out'])                        # suffix from its default
    two = middle(x=x, data=one.outputs['made'])                       # two levels down, artifact up
    deep = read(data=two.output)
    with dsl.ParallelFor([5, 6]) as k:                                # a nested pipeline per iteration
        each = inner(x=k, data=seed.outputs['out'])
    outputs = NamedTuple('Outputs', total=int, made=Dataset, deep=str, looped=List[int])
    return outputs(one.outputs['total'], one.outputs['made'], deep.output, dsl.Collected(each.outputs['total']))


# ---------------------------------------------------------------------------- exit handlers


@dsl.component(base_image=BASE)
def report_status(status: PipelineTaskFinalStatus) -> str:
    import json
    return json.dumps({'state': status.state, 'task': status.pipeline_task_name,
                       'has_run_id': bool(status.pipeline_job_resource_name),
                       'error_code': status.error_code}, sort_keys=True)


@dsl.pipeline(name='exit-handler-ok')
def exit_ok():
    status = report_status()
    with dsl.ExitHandler(status, name='guarded'):
        first = say(text='first')
        say(text='second').after(first)


@dsl.pipeline(name='exit-handler-failed')
def exit_failed():
    status = report_status()
    with dsl.ExitHandler(status, name='guarded'):
        broken = fail(message='guarded task broke')
        say(text='never').after(broken)


# ---------------------------------------------------------------------------- OneOf


@dsl.pipeline(name='oneof')
def oneof(n: int = 1) -> NamedTuple('Outputs', param=str, art=Dataset):
    with dsl.If(n == 1):
        a = say(text='one')
        wa = write(text='art-one')
    with dsl.Elif(n == 2):
        b = say(text='two')
        wb = write(text='art-two')
    with dsl.Else():
        c = say(text='other')
        wc = write(text='art-other')
    param = dsl.OneOf(a.output, b.output, c.output)
    art = dsl.OneOf(wa.outputs['out'], wb.outputs['out'], wc.outputs['out'])
    read(data=art)                                                     # OneOf outputs consumed downstream
    say(text=param)
    outputs = NamedTuple('Outputs', param=str, art=Dataset)
    return outputs(param, art)


# ---------------------------------------------------------------------------- dependencies and failures


@dsl.component(base_image=BASE)
def fallback(value: str = 'fallback-default') -> str:
    return value


@dsl.component(base_image=BASE)
def echo_or_fail(text: str, broken: bool) -> str:
    import sys
    if broken:
        print('failing on purpose', file=sys.stderr)
        sys.exit(3)
    return text


@dsl.pipeline(name='after-and-upstream-failure')
def after_and_failure():
    first = say(text='first')
    second = say(text='second').after(first)                         # .after() without data
    broken = echo_or_fail(text='never', broken=True).after(second)
    say(text=broken.output)                                           # its producer failed: SKIPPED
    producer = say(text='skipped-producer').after(broken)             # SKIPPED
    fallback(value=producer.output)                                   # SKIPPED in turn
    fallback(value=broken.output).ignore_upstream_failure()           # runs with its default
    say(text='independent')


@dsl.pipeline(name='failing')
def failing():
    broken = fail(message='a plain failure')
    say(text='downstream').after(broken)
    say(text='independent')


# ---------------------------------------------------------------------------- retries


@dsl.component(base_image=BASE)
def flaky(marker_dir: str, key: str, failures: int) -> int:
    """Fails its first `failures` attempts for `key` (counted in a file), then succeeds."""
    import os
    import sys
    os.makedirs(marker_dir, exist_ok=True)
    path = os.path.join(marker_dir, key)
    n = (int(open(path).read()) if os.path.exists(path) else 0) + 1
    with open(path, 'w') as f:
        f.write(str(n))
    if n <= failures:
        print(f'attempt {n} fails on purpose', file=sys.stderr)
        sys.exit(1)
    return n


@dsl.pipeline(name='retry')
def retry(marker_dir: str):
    flaky(marker_dir=marker_dir, key='once', failures=1).set_retry(num_retries=2, backoff_duration='0s')
    with dsl.ParallelFor(['a', 'b']) as k:
        flaky(marker_dir=marker_dir, key=k, failures=1).set_retry(num_retries=1, backoff_duration='0s')


@dsl.pipeline(name='retry-exhausted')
def retry_exhausted(marker_dir: str):
    flaky(marker_dir=marker_dir, key='always', failures=5).set_retry(num_retries=1, backoff_duration='0s')


CASES = {
    'conditions_if': conditions,
    'conditions_elif': conditions,
    'conditions_else': conditions,
    'loops': loops,
    'loop_edge_cases': loop_edges,
    'nested_pipelines': nested,
    'exit_handler_ok': exit_ok,
    'exit_handler_failed': exit_failed,
    'oneof_first': oneof,
    'oneof_else': oneof,
    'after_and_upstream_failure': after_and_failure,
    'failing_pipeline': failing,
    'retry': retry,
    'retry_exhausted': retry_exhausted,
}
