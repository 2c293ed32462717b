"""The ML example's components, one at a time, with the localrunner fixture."""
import json

from conftest import IRIS
from kfp import dsl
from ml_pipeline import deploy_model, evaluate_model, preprocess_data, train_model


def test_preprocess_splits_the_data_and_logs_stats(runner):
    result = runner.run_component(preprocess_data, raw_data=runner.artifact(path=IRIS),
                                  test_size=0.2, random_state=42)

    result.raise_for_state()
    assert result.metrics == {'total_rows': 150, 'train_rows': 120, 'test_rows': 30, 'feature_count': 4}
    train, test = result.artifacts['train_dataset'], result.artifacts['test_dataset']
    assert train.type == 'system.Dataset' and train.metadata == {'rows': 120}
    assert test.metadata == {'rows': 30}
    header, *rows = train.read_text().splitlines()
    assert header.split(',')[-1] == 'target' and len(rows) == 120
    assert 'Split 150 rows into 120 train / 30 test' in result.logs


def test_train_model_on_a_dataframe(runner, iris_df):
    result = runner.run_component(train_model, train_dataset=runner.artifact(dataframe=iris_df),
                                  n_estimators=10, max_depth=3, random_state=0)

    result.raise_for_state()
    model = result.artifacts['trained_model']
    assert model.type == 'system.Model'
    assert model.metadata['framework'] == 'sklearn'
    assert model.metadata['n_estimators'] == 10
    assert model.metadata['features'] == [c for c in iris_df.columns if c != 'target']
    assert sorted(model.metadata['classes']) == sorted(iris_df['target'].unique())
    assert result.metrics['train_accuracy'] > 0.9
    assert model.read_bytes()                      # the joblib file


def test_evaluate_model_on_a_trained_model(runner, iris_df):
    train = runner.run_component(train_model, train_dataset=iris_df.iloc[::2],   # a DataFrame is a Dataset
                                 n_estimators=10, max_depth=3, random_state=0).raise_for_state()
    test_set = runner.artifact(dataframe=iris_df.iloc[1::2], type=dsl.Dataset, name='test.csv')

    result = runner.run_component(evaluate_model, test_dataset=test_set,
                                  trained_model=train.artifacts['trained_model'], accuracy_threshold=0.5)

    assert result.output is True
    assert result.metrics['passed_threshold'] == 1.0
    assert 0.85 < result.metrics['test_accuracy'] <= 1.0
    assert 'accuracy=' in result.logs and 'passed=True' in result.logs


def test_deploy_model_writes_a_manifest(runner):
    import hashlib
    model = runner.artifact(bytes=b'not really a model', type=dsl.Model, metadata={'framework': 'sklearn'})

    result = runner.run_component(deploy_model, model=model, model_name='iris',
                                  serving_endpoint='http://localhost:8080/v1/models').raise_for_state()

    manifest = json.loads(result.artifacts['deployment'].read_text())
    assert manifest['model_sha256'] == hashlib.sha256(b'not really a model').hexdigest()
    assert manifest['model_metadata'] == {'framework': 'sklearn'}
    assert manifest['status'] == 'deployed'
    assert result.artifacts['deployment'].metadata == {'model_name': 'iris',
                                                       'serving_endpoint': 'http://localhost:8080/v1/models'}
