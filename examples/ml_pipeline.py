"""Reference ML pipeline: preprocess -> train (RandomForest) -> evaluate -> If(passed) deploy.

This is the pipeline from the KFP v2 guide ("Pipeline Composition and Conditional
Execution"), written as lightweight ``@dsl.component`` functions, with one change so it
runs offline: instead of reading ``gs://my-bucket/data/raw.csv`` it reads a small CSV
shipped in this repository (``examples/data/iris.csv``, Fisher's iris measurements).

The CSV enters the pipeline through ``dsl.importer``: ``data_path`` (absolute, or relative
to the directory localrunner is started from) becomes a Dataset artifact, identified by its
content, so the same pipeline runs on the subprocess and Docker backends and an edited CSV
re-runs exactly the steps that depend on it::

    localrunner run examples/ml_pipeline.yaml

Recompile the YAML next to this file with::

    python3 examples/ml_pipeline.py
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

BASE_IMAGE = "python:3.11-slim"
ML_PACKAGES = ["pandas>=2,<3", "scikit-learn>=1.3,<2"]


@dsl.component(base_image=BASE_IMAGE, packages_to_install=ML_PACKAGES)
def preprocess_data(
    raw_data: Input[Dataset],
    test_size: float,
    random_state: int,
    train_dataset: Output[Dataset],
    test_dataset: Output[Dataset],
    data_stats: Output[Metrics],
):
    """Load the CSV (label column ``target``), clean it and split it into train/test sets."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    print(f"Reading {raw_data.path}")
    df = pd.read_csv(raw_data.path)

    # Handle missing values
    df = df.dropna(subset=["target"])
    df = df.fillna(df.median(numeric_only=True))

    train_df, test_df = train_test_split(
        df, test_size=test_size, random_state=random_state, stratify=df["target"]
    )
    train_df.to_csv(train_dataset.path, index=False)
    test_df.to_csv(test_dataset.path, index=False)

    train_dataset.metadata["rows"] = len(train_df)
    test_dataset.metadata["rows"] = len(test_df)

    # Log metrics
    data_stats.log_metric("total_rows", len(df))
    data_stats.log_metric("train_rows", len(train_df))
    data_stats.log_metric("test_rows", len(test_df))
    data_stats.log_metric("feature_count", len(df.columns) - 1)
    print(f"Split {len(df)} rows into {len(train_df)} train / {len(test_df)} test")


@dsl.component(base_image=BASE_IMAGE, packages_to_install=ML_PACKAGES)
def train_model(
    train_dataset: Input[Dataset],
    n_estimators: int,
    max_depth: int,
    random_state: int,
    trained_model: Output[Model],
    training_metrics: Output[Metrics],
):
    """Train a Random Forest classifier and save it with joblib."""
    import joblib
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score

    train_df = pd.read_csv(train_dataset.path)
    X_train = train_df.drop(columns=["target"])
    y_train = train_df["target"]

    model = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        random_state=random_state,
        n_jobs=1,
    )
    model.fit(X_train, y_train)

    # Log training accuracy
    train_pred = model.predict(X_train)
    training_metrics.log_metric("train_accuracy", accuracy_score(y_train, train_pred))
    training_metrics.log_metric(
        "train_f1", f1_score(y_train, train_pred, average="weighted")
    )

    # Save model
    joblib.dump(model, trained_model.path)
    trained_model.metadata["framework"] = "sklearn"
    trained_model.metadata["model_type"] = "RandomForestClassifier"
    trained_model.metadata["n_estimators"] = n_estimators
    trained_model.metadata["features"] = list(X_train.columns)
    trained_model.metadata["classes"] = [str(c) for c in model.classes_]


@dsl.component(base_image=BASE_IMAGE, packages_to_install=ML_PACKAGES)
def evaluate_model(
    test_dataset: Input[Dataset],
    trained_model: Input[Model],
    eval_metrics: Output[Metrics],
    accuracy_threshold: float = 0.85,
) -> bool:
    """Evaluate the model on the test set; return whether accuracy meets the threshold."""
    import joblib
    import pandas as pd
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    test_df = pd.read_csv(test_dataset.path)
    X_test = test_df.drop(columns=["target"])
    y_test = test_df["target"]

    model = joblib.load(trained_model.path)
    predictions = model.predict(X_test)

    accuracy = accuracy_score(y_test, predictions)
    f1 = f1_score(y_test, predictions, average="weighted")
    passed = bool(accuracy >= accuracy_threshold)
    print(classification_report(y_test, predictions))
    print(f"accuracy={accuracy:.4f} threshold={accuracy_threshold} passed={passed}")

    eval_metrics.log_metric("test_accuracy", accuracy)
    eval_metrics.log_metric("test_f1", f1)
    eval_metrics.log_metric("passed_threshold", float(passed))
    return passed


@dsl.component(base_image=BASE_IMAGE)
def deploy_model(
    model: Input[Model],
    model_name: str,
    serving_endpoint: str,
    deployment: Output[Artifact],
):
    """Deploy the model: write a small JSON deployment manifest (no network calls)."""
    import hashlib
    import json

    with open(model.path, "rb") as f:
        model_sha256 = hashlib.sha256(f.read()).hexdigest()

    manifest = {
        "model_name": model_name,
        "serving_endpoint": serving_endpoint,
        "model_uri": model.uri,
        "model_sha256": model_sha256,
        "model_metadata": dict(model.metadata),
        "status": "deployed",
    }
    with open(deployment.path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    deployment.metadata["model_name"] = model_name
    deployment.metadata["serving_endpoint"] = serving_endpoint
    print(json.dumps(manifest, indent=2, sort_keys=True))


@dsl.pipeline(
    name="ml-training-pipeline",
    description="Data preprocessing -> Training -> Evaluation -> Conditional deployment pipeline",
)
def ml_training_pipeline(
    data_path: str = "examples/data/iris.csv",
    test_size: float = 0.2,
    n_estimators: int = 50,
    max_depth: int = 5,
    random_state: int = 42,
    accuracy_threshold: float = 0.85,
    model_name: str = "iris-classifier",
):
    # Step 0: bring the raw CSV in as a Dataset artifact
    raw_data = dsl.importer(artifact_uri=data_path, artifact_class=Dataset, reimport=False)
    raw_data.set_display_name("Import Raw Data")

    # Step 1: Data preprocessing
    preprocess_task = preprocess_data(
        raw_data=raw_data.output, test_size=test_size, random_state=random_state
    )
    preprocess_task.set_display_name("Data Preprocessing")

    # Step 2: Model training
    train_task = train_model(
        train_dataset=preprocess_task.outputs["train_dataset"],
        n_estimators=n_estimators,
        max_depth=max_depth,
        random_state=random_state,
    )
    train_task.set_display_name("Model Training")
    train_task.set_cpu_limit("2")
    train_task.set_memory_limit("2Gi")

    # Step 3: Model evaluation
    eval_task = evaluate_model(
        test_dataset=preprocess_task.outputs["test_dataset"],
        trained_model=train_task.outputs["trained_model"],
        accuracy_threshold=accuracy_threshold,
    )
    eval_task.set_display_name("Model Evaluation")

    # Step 4: Conditional deployment (if the accuracy threshold is met).
    # evaluate_model has two outputs (eval_metrics and its return value), so its return
    # value is referenced by name: eval_task.output would raise at compile time.
    with dsl.If(eval_task.outputs["Output"] == True):  # noqa: E712
        deploy_task = deploy_model(
            model=train_task.outputs["trained_model"],
            model_name=model_name,
            serving_endpoint="http://localhost:8080/v1/models",
        )
        deploy_task.set_display_name("Model Deployment")
        # a deployment has an effect outside the pipeline: always execute it fresh
        deploy_task.set_caching_options(False)


if __name__ == "__main__":
    import os

    from kfp import compiler

    compiler.Compiler().compile(
        pipeline_func=ml_training_pipeline,
        package_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ml_pipeline.yaml"),
    )
