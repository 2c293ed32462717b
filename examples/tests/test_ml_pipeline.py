"""The ML example pipeline (and the hello pipeline's compiled YAML), end to end."""
import json
import os

import pytest
from conftest import EXAMPLES, IRIS
from ml_pipeline import ml_training_pipeline


# Both tests share the session's run root, so the second one's preprocess and train steps
# are served from the cache the first one filled (opt-in: each test has its own otherwise).
@pytest.mark.localrunner(shared_cache=True)
def test_pipeline_trains_evaluates_and_deploys(runner):
    result = runner.run_pipeline(ml_training_pipeline, data_path=IRIS, n_estimators=20)

    result.raise_for_state()
    states = {name: t.state for name, t in result.leaf_tasks.items()}
    assert states == {'importer': 'SUCCEEDED', 'preprocess-data': 'SUCCEEDED', 'train-model': 'SUCCEEDED',
                      'evaluate-model': 'SUCCEEDED', 'condition-1/deploy-model': 'SUCCEEDED'}
    assert result.tasks['evaluate-model'].output is True
    assert result.metrics['evaluate-model']['test_accuracy'] >= 0.85
    assert result.metrics['preprocess-data']['total_rows'] == 150
    deployment = result.tasks['condition-1/deploy-model'].artifacts['deployment']
    manifest = json.loads(deployment.read_text())
    assert manifest['model_name'] == 'iris-classifier'
    assert manifest['model_uri'] == result.tasks['train-model'].artifacts['trained_model'].uri
    assert '=== train-model ===' in result.logs


@pytest.mark.localrunner(shared_cache=True)
def test_pipeline_skips_deploy_above_the_threshold(runner):
    result = runner.run_pipeline(ml_training_pipeline, data_path=IRIS, n_estimators=20,
                                 accuracy_threshold=0.999).raise_for_state()

    assert result.tasks['train-model'].state in ('SUCCEEDED', 'CACHED')
    assert result.tasks['evaluate-model'].output is False
    assert result.metrics['evaluate-model']['passed_threshold'] == 0.0
    assert result.tasks['condition-1'].state == 'SKIPPED'
    assert 'condition-1/deploy-model' not in result.tasks


def test_compiled_hello_pipeline_yaml(runner):
    result = runner.run_pipeline(os.path.join(EXAMPLES, 'hello_pipeline.yaml'), name='pytest')

    assert result.state == 'SUCCEEDED', result.failure_report()
    assert result.output == 'HELLO, PYTEST!'
    assert result.tasks['say-hello'].output == 'Hello, pytest!'
    assert 'HELLO, PYTEST!' in result.tasks['echo'].logs
