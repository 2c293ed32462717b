"""Smoke-test pipeline: two chained Python components and a container component.

No ``packages_to_install``, so it runs in seconds::

    localrunner run examples/hello_pipeline.yaml

Recompile the YAML next to this file with::

    python3 examples/hello_pipeline.py
"""

from kfp import dsl

BASE_IMAGE = "python:3.11-slim"


@dsl.component(base_image=BASE_IMAGE)
def say_hello(name: str) -> str:
    """Return a greeting for ``name``."""
    greeting = f"Hello, {name}!"
    print(greeting)
    return greeting


@dsl.component(base_image=BASE_IMAGE)
def shout(text: str) -> str:
    """Return ``text`` in upper case."""
    loud = text.upper()
    print(loud)
    return loud


@dsl.container_component
def echo(message: str):
    """Print ``message`` with the image's ``echo``."""
    return dsl.ContainerSpec(image=BASE_IMAGE, command=["echo"], args=[message])


@dsl.pipeline(name="hello-pipeline", description="say_hello -> shout -> echo smoke test")
def hello_pipeline(name: str = "localrunner") -> str:
    hello_task = say_hello(name=name)
    shout_task = shout(text=hello_task.output)
    echo(message=shout_task.output)
    return shout_task.output


if __name__ == "__main__":
    import os

    from kfp import compiler

    compiler.Compiler().compile(
        pipeline_func=hello_pipeline,
        package_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "hello_pipeline.yaml"),
    )
