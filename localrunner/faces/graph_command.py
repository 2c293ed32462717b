"""`localrunner graph PIPELINE`: the static plan as a graph — what can run in parallel, the
longest chain, or Graphviz DOT. Loops and conditions appear once (their items and values
are known only at run time)."""
from __future__ import annotations

import json

from localrunner.spec import Pipeline, load_pipeline, task_upstreams


def build_graph(pipeline: Pipeline):
    """A networkx DiGraph of executor tasks, '/'-joined names; a sub-DAG's tasks depend on
    everything its DAG task depends on."""
    import networkx as nx       # only this command needs it: ~0.2 s to import
    graph = nx.DiGraph()

    def leaves(prefix: str, component: dict, after: set[str]) -> set[str]:
        tasks = component.get('dag', {}).get('tasks', {})
        ends: dict[str, set[str]] = {}
        for key in _ordered(tasks):
            task = tasks[key]
            sub = pipeline.component(task['componentRef']['name'])
            before = set(after)
            for up in task_upstreams(task):
                before |= ends.get(up, set())
            name = prefix + key
            if 'dag' in sub:
                ends[key] = leaves(name + '/', sub, before)
            else:
                graph.add_node(name, kind=_kind(pipeline, sub))
                graph.add_edges_from((b, name) for b in before)
                ends[key] = {name}
        return set().union(*ends.values()) if ends else set(after)

    leaves('', pipeline.root, set())
    return graph


def _ordered(tasks: dict) -> list[str]:
    import graphlib
    return list(graphlib.TopologicalSorter({k: task_upstreams(t) for k, t in tasks.items()}).static_order())


def _kind(pipeline: Pipeline, component: dict) -> str:
    executor = pipeline.executors.get(component.get('executorLabel', ''), {})
    return 'importer' if 'importer' in executor else 'container'


def graph_command(args) -> int:
    import networkx as nx
    graph = build_graph(load_pipeline(args.pipeline))
    if args.format == 'dot':
        print('digraph pipeline {')
        for node in graph.nodes:
            print(f'  "{node}";')
        for a, b in graph.edges:
            print(f'  "{a}" -> "{b}";')
        print('}')
        return 0
    stages = [sorted(g) for g in nx.topological_generations(graph)]
    longest = nx.dag_longest_path(graph)
    if args.format == 'json':
        print(json.dumps({'tasks': graph.number_of_nodes(), 'stages': stages, 'longest_chain': longest}))
        return 0
    print(f'{graph.number_of_nodes()} tasks in {len(stages)} stages (loops and conditions counted once)')
    for i, stage in enumerate(stages, 1):
        print(f'  stage {i}: {", ".join(stage)}')
    print(f'longest chain: {" -> ".join(longest)}')
    return 0
