"""Artifacts of every type, as files and folders, with metadata; InputPath/OutputPath; lists of
artifacts collected from a loop; artifacts as pipeline outputs."""
from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import (HTML, Artifact, ClassificationMetrics, Dataset, Input, InputPath, Markdown, Metrics, Model,
                     Output, OutputPath)

from tests.conformance.sources._components import BASE


@dsl.component(base_image=BASE)
def make_dataset(rows: int, data: Output[Dataset]):
    with open(data.path, 'w') as f:
        f.write('x,y\n' + ''.join(f'{i},{i * i}\n' for i in range(rows)))
    data.metadata['rows'] = rows


@dsl.component(base_image=BASE)
def train(data: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
          quality: Output[ClassificationMetrics]):
    import json
    import os
    rows = open(data.path).read().strip().splitlines()[1:]
    os.makedirs(model.path, exist_ok=True)                  # a model is a folder here
    with open(os.path.join(model.path, 'weights.json'), 'w') as f:
        json.dump({'n': len(rows)}, f)
    with open(os.path.join(model.path, 'README'), 'w') as f:
        f.write('toy model\n')
    model.metadata['framework'] = 'toy'
    model.metadata['rows_seen'] = data.metadata['rows']
    metrics.log_metric('accuracy', 0.75)
    metrics.log_metric('rows', len(rows))
    quality.log_confusion_matrix(['cat', 'dog'], [[3, 1], [0, 4]])
    quality.log_roc_curve([0.0, 0.5, 1.0], [0.0, 0.8, 1.0], [1.0, 0.5, 0.0])


@dsl.component(base_image=BASE)
def render(model: Input[Model], page: Output[HTML], notes: Output[Markdown], extra: Output[Artifact]):
    import os
    files = sorted(os.listdir(model.path))
    with open(page.path, 'w') as f:
        f.write(f'<h1>{model.metadata["framework"]}</h1>')
    with open(notes.path, 'w') as f:
        f.write('# files\n' + ''.join(f'- {n}\n' for n in files))
    with open(extra.path, 'w') as f:
        f.write('generic')


@dsl.component(base_image=BASE)
def path_style(data: InputPath('Dataset'), lines_out: OutputPath('Dataset'), count: OutputPath(int)):
    """InputPath/OutputPath: plain paths instead of artifact objects; an int written to a path."""
    lines = open(data).read().splitlines()
    with open(lines_out, 'w') as f:
        f.write('\n'.join(reversed(lines)))
    with open(count, 'w') as f:
        f.write(str(len(lines)))


@dsl.component(base_image=BASE)
def shard(name: str, shard_out: Output[Dataset]):
    with open(shard_out.path, 'w') as f:
        f.write(f'shard {name}')
    shard_out.metadata['name'] = name


@dsl.component(base_image=BASE)
def merge(shards: Input[List[Dataset]], merged: Output[Dataset]) -> int:
    texts = sorted(open(s.path).read() for s in shards)
    with open(merged.path, 'w') as f:
        f.write('|'.join(texts))
    return len(shards)


@dsl.pipeline(name='artifacts-every-type')
def every_type(rows: int = 3) -> NamedTuple('Outputs', data=Dataset, model=Model, metrics=Metrics,
                                            quality=ClassificationMetrics, page=HTML, notes=Markdown,
                                            extra=Artifact, reversed_lines=Dataset, count=int):
    d = make_dataset(rows=rows)
    t = train(data=d.outputs['data'])
    r = render(model=t.outputs['model'])
    p = path_style(data=d.outputs['data'])
    outputs = NamedTuple('Outputs', data=Dataset, model=Model, metrics=Metrics, quality=ClassificationMetrics,
                         page=HTML, notes=Markdown, extra=Artifact, reversed_lines=Dataset, count=int)
    return outputs(d.outputs['data'], t.outputs['model'], t.outputs['metrics'], t.outputs['quality'],
                   r.outputs['page'], r.outputs['notes'], r.outputs['extra'], p.outputs['lines_out'],
                   p.outputs['count'])


@dsl.pipeline(name='artifacts-lists')
def lists() -> NamedTuple('Outputs', shards=List[Dataset], merged=Dataset, n=int):
    with dsl.ParallelFor(['b', 'a', 'c']) as name:
        s = shard(name=name)
    m = merge(shards=dsl.Collected(s.outputs['shard_out']))
    outputs = NamedTuple('Outputs', shards=List[Dataset], merged=Dataset, n=int)
    return outputs(dsl.Collected(s.outputs['shard_out']), m.outputs['merged'], m.outputs['Output'])


CASES = {
    'artifacts_every_type': every_type,
    'artifacts_lists': lists,
}
