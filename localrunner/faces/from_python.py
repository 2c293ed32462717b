"""`localrunner run my_pipeline.py[:name]`: compile a @dsl.pipeline (or a single component)
from a Python file with the user's own kfp SDK, then run the IR as usual. Saves the compile
step in the inner loop; the IR is what runs, so what works here works on a cluster."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

from localrunner.errors import UsageError


def is_python_target(target: str) -> bool:
    return target.split(':', 1)[0].endswith('.py')


def compile_python(target: str, out_dir: str) -> str:
    """Compiles PATH.py[:NAME] into out_dir and returns the YAML path."""
    path, _, name = target.partition(':')
    if not os.path.isfile(path):
        raise UsageError(f'{path}: no such file')
    try:
        from kfp import compiler
        from kfp.dsl import base_component, graph_component
    except ImportError:
        raise UsageError(f'{path}: compiling a Python pipeline needs the kfp SDK (pip install kfp)') from None
    module_name = 'localrunner_user_' + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UsageError(f'{path}: importing it failed: {type(e).__name__}: {e}') from None
    finally:
        sys.path.pop(0)
    if name:
        found = getattr(module, name, None)
        if not isinstance(found, base_component.BaseComponent):
            raise UsageError(f'{path}: no pipeline or component named {name!r}')
    else:
        pipelines = {k: v for k, v in vars(module).items() if isinstance(v, graph_component.GraphComponent)}
        if len(pipelines) != 1:
            listing = ', '.join(sorted(pipelines)) or 'none found'
            raise UsageError(f'{path}: name the pipeline to run as {path}:NAME ({listing})')
        name, found = next(iter(pipelines.items()))
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f'{os.path.splitext(os.path.basename(path))[0]}.{name}.yaml')
    try:
        compiler.Compiler().compile(found, package_path=out)
    except Exception as e:
        raise UsageError(f'{path}:{name}: the kfp compiler refused it: {e}') from None
    return out
