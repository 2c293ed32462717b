"""Where a task can run faithfully: on this machine, or only in its own image.

A lightweight Python component runs faithfully on the host: its venv is built from the same
`pip install` steps KFP's command would run in the image. A container component whose image
is a plain Python base, running python or a shell, only needs what any such machine has.
Anything else needs its image: a containerized Python component (`kfp component build`, whose
code lives in the image: KFP's command is `python3 -m kfp.dsl.executor_main` with no
`--component_module_path`), or a command of another image (busybox/alpine `sh` differs from
the host's, programs the image provides). On a backend without containers such a task still
runs its command on the host (KFP's own local SubprocessRunner does the same), with a
warning when the run is planned and a hint when it fails; `--backend auto` sends it to Docker.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from localrunner.environments.python_env import lift_prologue

if TYPE_CHECKING:
    from localrunner.spec import Pipeline
    from localrunner.spec.views import Container

# images that are "a Python base": the official python images (KFP's default for components);
# what they hold (python, a POSIX shell, coreutils) any machine that runs localrunner has
_PYTHON_BASE = re.compile(r'^(docker\.io/)?(library/)?python(:[\w.-]+)?(@sha256:[0-9a-f]+)?$')


def image_need(container: 'Container') -> Optional[str]:
    """None when the task runs faithfully on this machine, else why it needs its image."""
    command, args = list(container.command), list(container.args)
    python_env, argv = lift_prologue(command, args)
    if python_env is not None:
        return None
    image = container.image
    joined = ' '.join(command + args)
    if 'kfp.dsl.executor_main' in joined and '--component_module_path' not in joined:
        return f'a containerized Python component: its code lives in image {image}'
    if _PYTHON_BASE.match(image):
        return None
    program = command[0] if command else '(the image entrypoint)'
    return f'its command ({program}) comes from image {image}'


def tasks_needing_images(pipeline: 'Pipeline') -> dict[str, str]:
    """{executor label: why} for every executor of the pipeline that needs its image."""
    out = {}
    for label, executor in pipeline.view.executors.items():
        container = executor.container
        if container is None:
            continue
        if container.image.startswith('argostub/'):      # kfp-kubernetes PVC operations: no image runs
            continue
        why = image_need(container)
        if why:
            out[label] = why
    return out


def hint(why: str) -> str:
    return f'it needs its image ({why}); run it with --backend auto or --backend docker'
