"""Small KFP v2 pipelines for tests/test_control_flow.py (issue 3: every control-flow construct).

Components leave evidence in a folder passed as the pipeline parameter `out_dir`: `note` appends one
line per call to `<out_dir>/<tag>.txt`, so a test can tell which tasks ran and with which values.
"""

import warnings
from typing import List, NamedTuple

warnings.filterwarnings('ignore', category=FutureWarning)   # kfp: default base_image will change
warnings.filterwarnings('ignore', message='dsl.Condition is deprecated', category=DeprecationWarning)

from kfp import dsl  # noqa: E402
from kfp.dsl import Artifact, Dataset, Input, Output, PipelineTaskFinalStatus  # noqa: E402

# ---------------------------------------------------------------------------- components


@dsl.component
def note(out_dir: str, tag: str, value: str = '') -> str:
    """Appends `value` to <out_dir>/<tag>.txt; returns it."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(value + '\n')
    return value


@dsl.component
def note_default(out_dir: str, tag: str, value: str = 'default-value') -> str:
    import os
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(value + '\n')
    return value


@dsl.component
def note_int(out_dir: str, tag: str, value: int) -> int:
    import os
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(f'{value}\n')
    return value


@dsl.component
def note_pair(out_dir: str, tag: str, a: int, b: str) -> str:
    import os
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(f'{a}-{b}\n')
    return f'{a}-{b}'


@dsl.component
def mul(a: int, b: int) -> int:
    return a * b


@dsl.component
def concat_two(a: str, b: str, c: str) -> str:
    return a + b + c


@dsl.component
def echo(text: str) -> str:
    return text


@dsl.component
def twice(x: float) -> float:
    return x * 2


@dsl.component
def same_int(n: int) -> int:
    return n


@dsl.component
def negate(flag: bool) -> bool:
    return not flag


@dsl.component
def make_ints(n: int) -> list:
    return list(range(1, n + 1))


@dsl.component
def make_dicts() -> list:
    return [{'a': 1, 'b': 'x', 'vals': [1, 2]}, {'a': 2, 'b': 'y', 'vals': [3]}]


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def total(xs: List[int]) -> int:
    return sum(xs)


@dsl.component
def flatten_total(xss: List[List[int]]) -> int:
    return sum(sum(xs) for xs in xss)


@dsl.component
def json_of(value: list, out_dir: str, tag: str) -> str:
    import json
    import os
    text = json.dumps(value, sort_keys=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(text + '\n')
    return text


@dsl.component
def write_text(text: str, out: Output[Dataset]):
    with open(out.path, 'w') as f:
        f.write(text)
    out.metadata['text'] = text


@dsl.component
def read_text(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.component
def count_texts(datas: Input[List[Dataset]], out_dir: str, tag: str) -> int:
    """How many artifacts the list holds; KFP's executor gives None for an empty one."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(f'{datas is None} {len(datas or [])}\n')
    return len(datas or [])


@dsl.component
def concat_texts(datas: Input[List[Dataset]], out_dir: str, tag: str) -> str:
    import os
    text = ','.join(sorted(open(d.path).read() for d in datas))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(text + '\n')
    return text


@dsl.component
def span(log_dir: str, item: int, sleep_s: float) -> int:
    """Appends 'start <item> <t>' and 'end <item> <t>' lines to <log_dir>/spans.txt."""
    import os
    import time
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, 'spans.txt')
    with open(path, 'a') as f:
        f.write(f'start {item} {time.time()}\n')
    time.sleep(sleep_s)
    with open(path, 'a') as f:
        f.write(f'end {item} {time.time()}\n')
    return item


@dsl.component
def fail(message: str = 'boom'):
    import sys
    print(message, file=sys.stderr)
    sys.exit(3)


@dsl.component
def echo_or_fail(text: str, fail: bool) -> str:
    import sys
    if fail:
        print('failing on purpose', file=sys.stderr)
        sys.exit(3)
    return text


@dsl.component
def fail_if(value: int, bad: int) -> int:
    import sys
    if value == bad:
        print(f'item {value} is bad', file=sys.stderr)
        sys.exit(3)
    return value


@dsl.component
def sleep_then_note(out_dir: str, tag: str, sleep_s: float) -> str:
    import os
    import time
    time.sleep(sleep_s)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write('done\n')
    return tag


@dsl.component
def flaky(counter_dir: str, key: str, failures: int) -> int:
    """Fails the first `failures` times it is called for `key` (a counter file), then succeeds."""
    import os
    import sys
    import time
    os.makedirs(counter_dir, exist_ok=True)
    path = os.path.join(counter_dir, key + '.count')
    n = int(open(path).read()) if os.path.exists(path) else 0
    n += 1
    with open(path, 'w') as f:
        f.write(str(n))
    with open(os.path.join(counter_dir, key + '.times'), 'a') as f:
        f.write(f'{time.time()}\n')
    print(f'attempt {n} of {key}')
    if n <= failures:
        print(f'failing attempt {n}', file=sys.stderr)
        sys.exit(1)
    return n


@dsl.component
def final_status(out_dir: str, tag: str, status: PipelineTaskFinalStatus) -> str:
    import json
    import os
    data = {'state': status.state, 'pipeline_task_name': status.pipeline_task_name,
            'pipeline_job_resource_name': status.pipeline_job_resource_name,
            'error_code': status.error_code, 'error_message': status.error_message}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.json'), 'w') as f:
        json.dump(data, f)
    return status.state


@dsl.component
def with_defaults(out_dir: str, tag: str, a: str = 'da', b: int = 7, c: str = None,
                  d: Input[Dataset] = None) -> str:
    import json
    import os
    text = json.dumps({'a': a, 'b': b, 'c': c, 'd': None if d is None else open(d.path).read()},
                      sort_keys=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, tag + '.txt'), 'a') as f:
        f.write(text + '\n')
    return text


# ---------------------------------------------------------------------------- 1. conditions


@dsl.pipeline
def conditions_pipeline(out_dir: str, n: int = 1, x: float = 0.5, flag: bool = False, s: str = 'plain'):
    # int parameter: If / Elif / Else; each branch is a small chain
    with dsl.If(n > 2):
        first = note(out_dir=out_dir, tag='n_gt_2')
        note(out_dir=out_dir, tag='n_gt_2_chain', value=first.output)
    with dsl.Elif(n == 2):
        note(out_dir=out_dir, tag='n_eq_2')
    with dsl.Else():
        first_else = note(out_dir=out_dir, tag='n_else')
        note(out_dir=out_dir, tag='n_else_after').after(first_else)
    # double parameter against an int literal (CEL: double(1))
    with dsl.If(x > 1):
        note(out_dir=out_dir, tag='x_gt_1')
    with dsl.Else():
        note(out_dir=out_dir, tag='x_le_1')
    # double output against an int literal; int output against a double literal
    doubled = twice(x=x)
    with dsl.If(doubled.output == 3):
        note(out_dir=out_dir, tag='twice_x_eq_3')
    same = same_int(n=n)
    with dsl.If(same.output >= 1.5):
        note(out_dir=out_dir, tag='n_out_ge_1_5')
    # bools: a parameter and an output
    with dsl.If(flag == True):  # noqa: E712  (the DSL needs the comparison)
        note(out_dir=out_dir, tag='flag_true')
    with dsl.Else():
        note(out_dir=out_dir, tag='flag_false')
    negated = negate(flag=flag)
    with dsl.If(negated.output == True):  # noqa: E712
        note(out_dir=out_dir, tag='negated_true')
    # strings: a run-time value with both kinds of quote compared with another run-time value
    echoed = echo(text=s)
    with dsl.If(echoed.output == s):
        note(out_dir=out_dir, tag='s_same', value=s)
    with dsl.Else():
        note(out_dir=out_dir, tag='s_differs', value=s)
    # the deprecated dsl.Condition, and !=
    with dsl.Condition(s == 'plain'):
        note(out_dir=out_dir, tag='s_plain')
    with dsl.If(s != 'plain'):
        note(out_dir=out_dir, tag='s_not_plain')


@dsl.pipeline
def quoted_constant_pipeline(out_dir: str, s: str = 'it\'s "q"'):
    """KFP compiles the constant into CEL as 'it's "q"' (unescaped)."""
    with dsl.If(s == 'it\'s "q"'):
        note(out_dir=out_dir, tag='quoted_if')
    with dsl.Else():
        note(out_dir=out_dir, tag='quoted_else')


# ---------------------------------------------------------------------------- 2. loops


@dsl.pipeline
def loops_pipeline(out_dir: str, items: list = [10, 20], n: int = 3):
    with dsl.ParallelFor(['p', 'q', 'r']) as letter:
        note(out_dir=out_dir, tag='literal', value=letter)
    with dsl.ParallelFor(items) as item:
        note_int(out_dir=out_dir, tag='param', value=item)
    ints = make_ints(n=n)
    with dsl.ParallelFor(ints.output) as i:
        note_int(out_dir=out_dir, tag='upstream', value=i)
    dicts = make_dicts()
    with dsl.ParallelFor(dicts.output) as d:
        note(out_dir=out_dir, tag='dict_b', value=d.b)
        note_int(out_dir=out_dir, tag='dict_a', value=d.a)
        with dsl.ParallelFor(d.vals) as v:          # a loop over a field of the outer item
            note_int(out_dir=out_dir, tag='inner_vals', value=v)
    with dsl.ParallelFor([1, 2]) as outer:
        with dsl.ParallelFor(['u', 'v']) as inner:
            note_pair(out_dir=out_dir, tag='cross', a=outer, b=inner)


@dsl.pipeline
def limited_loop_pipeline(log_dir: str, sleep_s: float = 0.4):
    with dsl.ParallelFor([1, 2, 3], parallelism=1) as i:
        span(log_dir=log_dir, item=i, sleep_s=sleep_s)


@dsl.pipeline
def unlimited_loop_pipeline(log_dir: str, sleep_s: float = 1.0):
    with dsl.ParallelFor([1, 2, 3, 4]) as i:
        span(log_dir=log_dir, item=i, sleep_s=sleep_s)


# ---------------------------------------------------------------------------- 3. collected


@dsl.pipeline
def collected_pipeline(out_dir: str) -> NamedTuple('Outputs', squares=List[int], texts=List[Dataset],
                                                     odd_squares=List[int], nested=List[List[int]]):
    # parameters and artifacts collected into task inputs and pipeline outputs
    with dsl.ParallelFor([1, 2, 3]) as i:
        sq = square(x=i)
    t = total(xs=dsl.Collected(sq.output))
    note_int(out_dir=out_dir, tag='total', value=t.output)
    with dsl.ParallelFor(['a', 'b', 'c']) as letter:
        wt = write_text(text=letter)
    concat_texts(datas=dsl.Collected(wt.outputs['out']), out_dir=out_dir, tag='texts')
    # tasks inside a condition inside a loop: only the iterations that ran
    with dsl.ParallelFor([1, 2, 3, 4]) as j:
        with dsl.If(j != 2):
            odd = square(x=j)
    json_of(value=dsl.Collected(odd.output), out_dir=out_dir, tag='cond_collected')
    with dsl.ParallelFor(['a', 'b', 'c']) as letter2:
        with dsl.If(letter2 != 'b'):
            kept = write_text(text=letter2)
    concat_texts(datas=dsl.Collected(kept.outputs['out']), out_dir=out_dir, tag='cond_texts')
    # a loop over an empty upstream list: zero iterations, an empty collection
    nothing = make_ints(n=0)
    with dsl.ParallelFor(nothing.output) as z:
        never = square(x=z)
    json_of(value=dsl.Collected(never.output), out_dir=out_dir, tag='empty_collected')
    with dsl.ParallelFor(nothing.output) as z2:
        never_written = write_text(text='x')
    count_texts(datas=dsl.Collected(never_written.outputs['out']), out_dir=out_dir, tag='empty_artifacts')
    # nested loops: a list of lists
    with dsl.ParallelFor([1, 2]) as outer:
        with dsl.ParallelFor([10, 20]) as inner:
            prod = mul(a=outer, b=inner)
    flatten_total(xss=dsl.Collected(prod.output))
    outputs = NamedTuple('Outputs', squares=List[int], texts=List[Dataset], odd_squares=List[int],
                         nested=List[List[int]])
    return outputs(squares=dsl.Collected(sq.output), texts=dsl.Collected(wt.outputs['out']),
                   odd_squares=dsl.Collected(odd.output), nested=dsl.Collected(prod.output))


# ---------------------------------------------------------------------------- 4. nested pipelines


@dsl.pipeline
def inner_pipeline(text: str, data: Input[Dataset], suffix: str = '-inner') -> NamedTuple(
        'InnerOutputs', joined=str, made=Dataset):
    got = read_text(data=data)                    # an artifact coming down
    joined = concat_two(a=got.output, b=text, c=suffix)
    made = write_text(text=joined.output)         # an artifact going up
    outputs = NamedTuple('InnerOutputs', joined=str, made=Dataset)
    return outputs(joined=joined.output, made=made.outputs['out'])


@dsl.pipeline
def middle_pipeline(text: str, data: Input[Dataset]) -> Dataset:
    inner = inner_pipeline(text=text, data=data, suffix='-mid')
    return inner.outputs['made']


@dsl.pipeline
def nested_pipeline(out_dir: str, text: str = 'T') -> NamedTuple('Outputs', joined=str, made=Dataset,
                                                                  deep=Dataset):
    seed = write_text(text='seed')
    inner = inner_pipeline(text=text, data=seed.outputs['out'])      # suffix from its default
    back = read_text(data=inner.outputs['made'])
    note(out_dir=out_dir, tag='joined', value=inner.outputs['joined'])
    note(out_dir=out_dir, tag='made', value=back.output)
    mid = middle_pipeline(text='M', data=inner.outputs['made'])      # two levels down, artifact up
    deep = read_text(data=mid.output)
    note(out_dir=out_dir, tag='deep', value=deep.output)
    outputs = NamedTuple('Outputs', joined=str, made=Dataset, deep=Dataset)
    return outputs(joined=inner.outputs['joined'], made=inner.outputs['made'], deep=mid.output)


# ---------------------------------------------------------------------------- 5. exit handlers


@dsl.pipeline
def exit_handler_pipeline(out_dir: str):
    ok_status = final_status(out_dir=out_dir, tag='ok_status')
    with dsl.ExitHandler(ok_status, name='guard-ok'):
        note(out_dir=out_dir, tag='guarded_ok')
    bad_status = final_status(out_dir=out_dir, tag='bad_status')
    with dsl.ExitHandler(bad_status, name='guard-bad'):
        first = note(out_dir=out_dir, tag='guarded_first')
        broken = fail(message='guarded task broke').after(first)
        note(out_dir=out_dir, tag='after_broken').after(broken)
    loop_status = final_status(out_dir=out_dir, tag='loop_status')
    with dsl.ExitHandler(loop_status):
        with dsl.ParallelFor([1, 2, 3]) as i:      # an exit handler around a failing loop
            fail_if(value=i, bad=2)


# ---------------------------------------------------------------------------- 6. OneOf


@dsl.pipeline
def oneof_pipeline(out_dir: str, n: int = 1) -> NamedTuple('Outputs', param=str, art=Dataset):
    with dsl.If(n == 1):
        a = echo(text='one')
        wa = write_text(text='art-one')
    with dsl.Elif(n == 2):
        b = echo(text='two')
        wb = write_text(text='art-two')
    with dsl.Else():
        c = echo(text='other')
        wc = write_text(text='art-other')
    param = dsl.OneOf(a.output, b.output, c.output)
    art = dsl.OneOf(wa.outputs['out'], wb.outputs['out'], wc.outputs['out'])
    note(out_dir=out_dir, tag='param', value=param)
    got = read_text(data=art)
    note(out_dir=out_dir, tag='art', value=got.output)
    outputs = NamedTuple('Outputs', param=str, art=Dataset)
    return outputs(param=param, art=art)


# ---------------------------------------------------------------------------- 7. dependencies and failures


@dsl.pipeline
def failure_pipeline(out_dir: str):
    first = sleep_then_note(out_dir=out_dir, tag='first', sleep_s=0.5)
    second = note(out_dir=out_dir, tag='second').after(first)       # .after() without data
    broken = echo_or_fail(text='never', fail=True).after(second)
    note(out_dir=out_dir, tag='dependent', value=broken.output)
    note_default(out_dir=out_dir, tag='ignores_failed', value=broken.output).ignore_upstream_failure()
    producer = echo(text='produced').after(broken)                  # SKIPPED: its upstream failed
    note(out_dir=out_dir, tag='data_dependent', value=producer.output)
    note_default(out_dir=out_dir, tag='ignores_skipped', value=producer.output).ignore_upstream_failure()
    healthy = echo(text='healthy')
    note_default(out_dir=out_dir, tag='ignores_healthy', value=healthy.output).ignore_upstream_failure()
    sleep_then_note(out_dir=out_dir, tag='unrelated', sleep_s=1.5)
    status = final_status(out_dir=out_dir, tag='exit_status')
    with dsl.ExitHandler(status):
        fail(message='guarded failure')


@dsl.pipeline
def fail_fast_pipeline(out_dir: str):
    fail(message='first failure')
    slow = sleep_then_note(out_dir=out_dir, tag='slow', sleep_s=8.0)
    note(out_dir=out_dir, tag='after_slow').after(slow)
    with dsl.ParallelFor([1, 2, 3, 4]) as i:
        sleep_then_note(out_dir=out_dir, tag='loop', sleep_s=6.0).after(
            note_int(out_dir=out_dir, tag='loop_first', value=i))


# ---------------------------------------------------------------------------- 8. retries


@dsl.pipeline
def retried_sub(out_dir: str):
    flaky(counter_dir=out_dir, key='sub', failures=0)


@dsl.pipeline
def retry_pipeline(out_dir: str):
    flaky(counter_dir=out_dir, key='top', failures=2).set_retry(
        num_retries=2, backoff_duration='0s', backoff_factor=1.0)
    flaky(counter_dir=out_dir, key='short', failures=2).set_retry(
        num_retries=1, backoff_duration='0s')
    flaky(counter_dir=out_dir, key='backoff', failures=2).set_retry(
        num_retries=2, backoff_duration='1s', backoff_factor=2.0)         # waits 1 s, then 2 s
    with dsl.ParallelFor(['a', 'b']) as k:                 # retries inside a loop
        flaky(counter_dir=out_dir, key=k, failures=1).set_retry(num_retries=1, backoff_duration='0s')
    retried_sub(out_dir=out_dir).set_retry(num_retries=2)   # on a pipeline task: said, not applied


# ---------------------------------------------------------------------------- 9. optional inputs and defaults


@dsl.pipeline
def defaults_inner(out_dir: str, a: str = 'inner-a', b: int = 5, c: str = None, d: Input[Dataset] = None):
    with_defaults(out_dir=out_dir, tag='inner_passes', a=a, b=b, c=c, d=d)
    with_defaults(out_dir=out_dir, tag='inner_bare')


@dsl.pipeline
def defaults_pipeline(out_dir: str, pa: str = 'pipe-a'):
    with_defaults(out_dir=out_dir, tag='bare')
    w = write_text(text='data')
    with_defaults(out_dir=out_dir, tag='full', a=pa, b=1, c='C', d=w.outputs['out'])
    defaults_inner(out_dir=out_dir)
    with_defaults(out_dir=out_dir, tag='from_param', a=pa)
    defaults_inner(out_dir=out_dir, a='outer-a', c='outer-c', d=w.outputs['out'])


# ---------------------------------------------------------------------------- 10. ParallelFor over artifacts


@dsl.pipeline
def loop_over_artifacts(out_dir: str, datas: Input[List[Dataset]]):
    with dsl.ParallelFor(datas) as art:
        r = read_text(data=art)
        note(out_dir=out_dir, tag='read', value=r.output)


@dsl.pipeline
def artifact_loop_pipeline(out_dir: str):
    with dsl.ParallelFor(['a', 'b']) as letter:
        w = write_text(text=letter)
    loop_over_artifacts(out_dir=out_dir, datas=dsl.Collected(w.outputs['out']))


# ---------------------------------------------------------------------------- nestings


@dsl.pipeline
def nesting_pipeline(out_dir: str, limit: int = 2, dicts: list = [{'a': 1, 'b': 'one'}, {'a': 2, 'b': 'two'}]):
    # a condition on a field of a loop item (a pipeline parameter: list of dicts)
    with dsl.ParallelFor(dicts) as d:
        with dsl.If(d.b == 'two'):
            note_int(out_dir=out_dir, tag='item_field_cond', value=d.a)
    # a nested pipeline inside a loop; its output collected
    seed = write_text(text='s')
    with dsl.ParallelFor(['p', 'q']) as t:
        sub = inner_pipeline(text=t, data=seed.outputs['out'])
    json_of(value=dsl.Collected(sub.outputs['joined']), out_dir=out_dir, tag='sub_collected')
    # a loop in a condition in a loop
    with dsl.ParallelFor([1, 2, 3]) as i:
        with dsl.If(i >= limit):
            with dsl.ParallelFor(['x', 'y']) as s:
                note_pair(out_dir=out_dir, tag='loop_cond_loop', a=i, b=s)
    # a condition on a loop's collected output
    with dsl.ParallelFor([1, 2, 3]) as j:
        sq = square(x=j)
    t = total(xs=dsl.Collected(sq.output))
    with dsl.If(t.output == 14):
        note(out_dir=out_dir, tag='total_is_14')
    with dsl.Else():
        note(out_dir=out_dir, tag='total_is_not_14')


@dsl.pipeline
def guarded_child(out_dir: str):
    status = final_status(out_dir=out_dir, tag='child_status')
    with dsl.ExitHandler(status):
        fail(message='child broke')


@dsl.pipeline
def nested_exit_pipeline(out_dir: str):
    child = guarded_child(out_dir=out_dir)
    note(out_dir=out_dir, tag='after_child').after(child)
    note(out_dir=out_dir, tag='independent')


@dsl.pipeline
def squares_child(n: int) -> List[int]:
    nums = make_ints(n=n)
    with dsl.ParallelFor(nums.output) as i:
        sq = square(x=i)
    return dsl.Collected(sq.output)


@dsl.pipeline
def child_collected_pipeline(out_dir: str, n: int = 3) -> List[int]:
    child = squares_child(n=n)
    t = total(xs=child.output)
    with dsl.If(t.output > 10):
        note_int(out_dir=out_dir, tag='child_total', value=t.output)
    return child.output
