"""Caching options in every form the IR can hold them, and what each must mean.

KFP's driver serves a cached result only when `cachingOptions.enableCache` is true
(kubeflow/pipelines backend/src/v2/driver/cache.go: `GetCachingOptions().GetEnableCache()`);
the SDK writes `cachingOptions: {}` for set_caching_options(False) and for every task compiled
with KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT (kfp/compiler/pipeline_spec_builder.py,
kfp/dsl/pipeline_context.py). A proto3 bool that is absent reads false: `{}`, an explicit
`enableCache: false` and no cachingOptions at all all mean OFF. A custom cache key replaces
the computed key but stays scoped by component (kfp/local/cache.py compute_key).
"""
from kfp import dsl

from tests.conformance.build import Compile, Replace
from tests.conformance.sources._components import (constant, echo_and_token, random_data, read_and_token,
                                                   shout, token)


@dsl.pipeline(name='caching-forms')
def forms():
    token(label='default')                                              # enableCache: true
    token(label='off').set_caching_options(False)                       # {}
    token(label='on').set_caching_options(True)                         # enableCache: true
    token(label='keyed').set_caching_options(True, cache_key='k-v1')    # + cacheKey
    token(label='keyed-off').set_caching_options(False, cache_key='k-v1')   # cacheKey only: off


@dsl.pipeline(name='caching-one-token')
def one_token():
    token(label='one')


@dsl.pipeline(name='caching-one-token')
def one_token_off():
    token(label='one').set_caching_options(False)


@dsl.pipeline(name='caching-twins')
def twins():
    # identical tasks in one run share one action key
    token(label='same').set_caching_options(False)
    token(label='same').set_caching_options(False)
    token(label='shared')
    token(label='shared')
    with dsl.ParallelFor(['x', 'x']) as item:          # identical iterations, caching off
        token(label=item).set_caching_options(False)
    with dsl.ParallelFor(['y', 'y']) as item2:         # identical iterations, caching on
        token(label=item2)


@dsl.pipeline(name='caching-custom-key')
def custom_key():
    token(label='a').set_caching_options(True, cache_key='team-key')
    token(label='b').set_caching_options(True, cache_key='team-key')     # other input, same key: shared
    shout(label='a').set_caching_options(True, cache_key='team-key')     # other component: its own
    token(label='a').set_caching_options(False, cache_key='team-key')    # off despite the key


@dsl.pipeline(name='caching-child')
def caching_child(label: str) -> str:
    return token(label=label).output


@dsl.pipeline(name='caching-disabled-by-default')
def disabled_by_default():
    token(label='plain')
    with dsl.ParallelFor(['p', 'q']) as item:
        token(label=item)
    caching_child(label='nested')
    token(label='explicit').set_caching_options(True)     # an explicit True still wins


@dsl.pipeline(name='caching-off-upstream')
def off_upstream():
    # a caching-off producer of fresh bytes: its consumer sees new content, so runs again
    fresh = random_data().set_caching_options(False)
    read_and_token(data=fresh.outputs['out'])
    # a caching-off producer of the same value every time: its consumer's key is unchanged
    same = constant(label='c').set_caching_options(False)
    echo_and_token(text=same.output)


_TRUE = '        cachingOptions:\n          enableCache: true\n'

CASES = {
    'caching_forms': forms,
    # the form a JSON serialiser that writes proto3 defaults produces (never the SDK)
    'caching_enable_cache_false': Compile(one_token, edit=(
        Replace(_TRUE, '        cachingOptions:\n          enableCache: false\n'),)),
    # hand-written IR without cachingOptions
    'caching_absent': Compile(one_token, edit=(Replace(_TRUE, ''),)),
    'caching_off_writes_nothing': {'pipeline.yaml': one_token_off, 'pipeline-on.yaml': one_token},
    'caching_twins': twins,
    'caching_custom_key': custom_key,
    'caching_disabled_by_default_compiled': Compile(
        disabled_by_default, env={'KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT': 'true'}),
    'caching_disabled_by_default_at_run': one_token,
    'caching_no_cache_rerun': one_token,
    'caching_no_cache_first': one_token,
    'caching_off_upstream': off_upstream,
}
