"""Components the conformance sources share.

`token` is the probe for caching: it returns a fresh random token every time it really
executes, so "served from the cache" (same token as before) and "executed again" (a new
token) are observable from the outputs alone.
"""
import warnings

warnings.filterwarnings('ignore', category=FutureWarning)   # kfp: default base_image will change

from kfp import dsl  # noqa: E402
from kfp.dsl import Dataset, Input, Output  # noqa: E402

BASE = 'python:3.11'      # explicit, so the compiled image never moves with the SDK's default


@dsl.component(base_image=BASE)
def token(label: str) -> str:
    import secrets
    return f'{label}-{secrets.token_hex(8)}'


@dsl.component(base_image=BASE)
def shout(label: str) -> str:
    """Another component with the same interface as `token` (a different component name)."""
    import secrets
    return f'{label.upper()}-{secrets.token_hex(8)}'


@dsl.component(base_image=BASE)
def constant(label: str) -> str:
    """Deterministic: the same output whenever it runs."""
    return f'constant-{label}'


@dsl.component(base_image=BASE)
def random_data(out: Output[Dataset]):
    import secrets
    with open(out.path, 'w') as f:
        f.write(secrets.token_hex(8))


@dsl.component(base_image=BASE)
def text_data(text: str, out: Output[Dataset]):
    with open(out.path, 'w') as f:
        f.write(text)


@dsl.component(base_image=BASE)
def read_and_token(data: Input[Dataset]) -> str:
    """What it read, plus a fresh token: proves whether it executed."""
    import secrets
    with open(data.path) as f:
        return f'{f.read()}:{secrets.token_hex(4)}'


@dsl.component(base_image=BASE)
def echo_and_token(text: str) -> str:
    import secrets
    return f'{text}:{secrets.token_hex(4)}'


@dsl.component(base_image=BASE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image=BASE)
def make_ints(n: int) -> list:
    return list(range(1, n + 1))


@dsl.component(base_image=BASE)
def square(x: int) -> int:
    return x * x


@dsl.component(base_image=BASE)
def total(xs: list) -> int:
    return sum(xs)


@dsl.component(base_image=BASE)
def fail(message: str = 'failing on purpose'):
    import sys
    print(message, file=sys.stderr)
    sys.exit(3)
