"""Pipelines the benchmarks run, written with the KFP SDK and compiled to benchmarks/.work/.

Run with an interpreter that has kfp==2.17.3 (benchmarks/run.py uses its own kfp venv):

    python benchmarks/pipelines.py OUT_DIR [DOCKER_IMAGE]

Every trivial task is the same lightweight component, ``identity(x: int) -> int``, the
component kfp.local's published baseline used. The docker variants differ only in
``base_image`` (no registry is reachable here, so they use a locally built image).
The example pipeline is examples/ml_pipeline.yaml itself; its docker variant is the same
YAML with ``python:3.11-slim`` replaced by the local image.

``build(image)`` returns the pipeline functions too, so kfp.local (which runs Python
pipeline functions, not YAML) runs exactly the components that localrunner runs.
"""


import os
import sys

from kfp import compiler, dsl

SUBPROCESS_IMAGE = 'python:3.11-slim'     # ignored by both subprocess runners


def build(image: str = SUBPROCESS_IMAGE) -> dict:
    @dsl.component(base_image=image)
    def identity(x: int) -> int:
        return x

    @dsl.pipeline(name='bench-one')
    def one(x: int = 1) -> int:
        return identity(x=x).output

    def chain(n: int):
        @dsl.pipeline(name=f'bench-chain-{n}')
        def chain_pipeline(x: int = 1) -> int:
            task = identity(x=x)
            for _ in range(n - 1):
                task = identity(x=task.output)
            return task.output
        return chain_pipeline

    def fanout(n: int):
        @dsl.pipeline(name=f'bench-fanout-{n}')
        def fanout_pipeline():
            with dsl.ParallelFor(items=list(range(n))) as item:
                identity(x=item)
        return fanout_pipeline

    return {'identity': identity, 'one': one, 'chain': chain, 'fanout': fanout}


def compile_all(out_dir: str, docker_image, chain_n: int, fanout_ns: list[int],
                example_yaml: str) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    variants = [('sub', SUBPROCESS_IMAGE)] + ([('docker', docker_image)] if docker_image else [])
    for tag, image in variants:
        p = build(image)
        jobs = {'one': p['one'], f'chain{chain_n}': p['chain'](chain_n)}
        for n in fanout_ns:
            jobs[f'fanout{n}'] = p['fanout'](n)
        for name, fn in jobs.items():
            path = os.path.join(out_dir, f'{name}-{tag}.yaml')
            compiler.Compiler().compile(pipeline_func=fn, package_path=path)
            paths[f'{name}-{tag}'] = path
    with open(example_yaml) as f:
        text = f.read()
    for tag, image in variants:
        path = os.path.join(out_dir, f'ml-{tag}.yaml')
        with open(path, 'w') as f:
            f.write(text.replace("'python:3.11-slim'", image).replace('python:3.11-slim', image))
        paths[f'ml-{tag}'] = path
    return paths


if __name__ == '__main__':
    import json
    out = sys.argv[1]
    image = sys.argv[2] if len(sys.argv) > 2 else None
    chain_n = int(os.environ.get('BENCH_CHAIN', '10'))
    fans = [int(x) for x in os.environ.get('BENCH_FANOUT', '50,200').split(',') if x]
    here = os.path.dirname(os.path.abspath(__file__))
    example = os.path.join(os.path.dirname(here), 'examples', 'ml_pipeline.yaml')
    print(json.dumps(compile_all(out, image, chain_n, fans, example)))
