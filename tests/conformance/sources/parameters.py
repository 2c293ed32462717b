"""Parameters of every type, pipeline and component defaults, optional inputs, typed outputs.

A dict default keeps one key per level: the compiler's header comment (`# Inputs: ... [Default:
...]`) prints it in protobuf map order, which changes from one process to the next, so a
two-key default would make the compiled file differ on every compile. Several keys come in
through params.json instead (params_overrides)."""
from typing import NamedTuple, Optional

from kfp import dsl

from tests.conformance.sources._components import BASE


@dsl.component(base_image=BASE)
def typed_echo(s: str, i: int, f: float, b: bool, l: list, d: dict, opt: Optional[str] = None,
               comp_default: int = 42) -> NamedTuple('Out', s=str, i=int, f=float, b=bool, l=list, d=dict,
                                                     summary=str):
    import json
    outputs = NamedTuple('Out', s=str, i=int, f=float, b=bool, l=list, d=dict, summary=str)
    summary = json.dumps({'types': [type(v).__name__ for v in (s, i, f, b, l, d)],
                          'opt': opt, 'comp_default': comp_default}, sort_keys=True)
    return outputs(s + '!', i + 1, f * 2, not b, l + ['tail'], dict(d, added=True), summary)


@dsl.pipeline(name='params-every-type')
def every_type(s: str = 'text with "quotes" and \'apostrophes\'', i: int = 7, f: float = 1.5, b: bool = True,
               l: list = [1, 'two', {'three': 3}], d: dict = {'k': {'n': [1, 2]}},
               opt: Optional[str] = None) -> NamedTuple('Outputs', s=str, i=int, f=float, b=bool, l=list, d=dict,
                                                         summary=str):
    t = typed_echo(s=s, i=i, f=f, b=b, l=l, d=d, opt=opt)
    outputs = NamedTuple('Outputs', s=str, i=int, f=float, b=bool, l=list, d=dict, summary=str)
    return outputs(t.outputs['s'], t.outputs['i'], t.outputs['f'], t.outputs['b'], t.outputs['l'], t.outputs['d'],
                   t.outputs['summary'])


@dsl.component(base_image=BASE)
def join_words(a: str, b: str = 'component-default') -> str:
    return f'{a}+{b}'


@dsl.pipeline(name='params-constants')
def constants() -> NamedTuple('Outputs', literal=str, chained=str, defaulted=str):
    """Constants written into the IR, a value passed along a chain, a component default."""
    first = join_words(a='lit', b='eral')
    chained = join_words(a=first.output, b='x')
    defaulted = join_words(a='only-a')
    outputs = NamedTuple('Outputs', literal=str, chained=str, defaulted=str)
    return outputs(first.output, chained.output, defaulted.output)


@dsl.component(base_image=BASE)
def repeat(word: str, count: int) -> str:
    return word * count


@dsl.pipeline(name='params-required')
def required(count: int, word: str = 'x') -> str:
    return repeat(word=word, count=count).output


CASES = {
    'params_defaults': every_type,
    'params_overrides': every_type,
    'params_constants': constants,
    # bad input: refused with exit 2 and one line naming the parameter, before anything runs
    'invalid_param_type': every_type,
    'invalid_param_unknown': every_type,
    'invalid_param_missing': required,
}
