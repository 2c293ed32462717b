"""localrunner: run Kubeflow Pipelines v2 pipelines locally, cached."""

__version__ = '0.1.0'      # the distribution's version (pyproject.toml reads it here)
