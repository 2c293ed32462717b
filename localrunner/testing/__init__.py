"""Testing helpers behind the pytest plugin (localrunner.pytest_plugin), usable without pytest.

    from localrunner.testing import LocalRunner
    runner = LocalRunner(root='/tmp/lr')
    result = runner.run_component(my_component, x=1)
    assert result.output == 2
"""
from localrunner.testing.artifacts import InputArtifact, make_artifact, schema_of
from localrunner.testing.results import (ComponentResult, LocalRunnerFailure, OutputArtifact, PipelineResult,
                                         TaskResult)
from localrunner.testing.runner import LocalRunner

__all__ = ['ComponentResult', 'InputArtifact', 'LocalRunner', 'LocalRunnerFailure', 'OutputArtifact',
           'PipelineResult', 'TaskResult', 'make_artifact', 'schema_of']
