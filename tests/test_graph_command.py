"""`localrunner graph`: the static plan built with networkx."""
import json
import os

from tests.helpers import run_cli

EXAMPLE = os.path.join(os.path.dirname(__file__), '..', 'examples', 'ml_pipeline.yaml')


def test_stages_and_longest_chain_of_the_example():
    proc = run_cli('graph', EXAMPLE, '--format', 'json')
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan['tasks'] == 5
    assert plan['stages'][0] == ['importer'] and plan['stages'][-1] == ['condition-1/deploy-model']
    assert plan['longest_chain'] == ['importer', 'preprocess-data', 'train-model', 'evaluate-model',
                                     'condition-1/deploy-model']


def test_dot_output_has_every_edge():
    proc = run_cli('graph', EXAMPLE, '--format', 'dot')
    assert proc.returncode == 0
    assert '"train-model" -> "evaluate-model";' in proc.stdout
    assert '"preprocess-data" -> "evaluate-model";' in proc.stdout
