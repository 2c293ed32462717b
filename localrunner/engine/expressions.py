"""CEL, as KFP uses it: trigger conditions and loop-item field selectors.

KFP compiles dsl.If/Elif/Else into CEL over `inputs.parameter_values[...]` and a loop item's
field access into `parseJson(string_value)["field"]`. We evaluate both with a real CEL
implementation (cel-python), never by rewriting the text.
"""
from __future__ import annotations

import functools
import json
from typing import Any

_ENV = None


def _cel():
    """cel-python, imported on first use: most pipelines have no condition."""
    global _ENV
    import celpy
    if _ENV is None:
        _ENV = celpy.Environment()
    return celpy, _ENV


class ExpressionError(Exception):
    pass


def _parse_json(text: Any) -> Any:
    celpy, _ = _cel()
    try:
        return celpy.json_to_cel(json.loads(str(text)))
    except ValueError as e:
        raise ExpressionError(f'parseJson: not JSON: {text!r}') from e


def _no_null(name: str):
    """CEL's conversion `name`, refusing null as cel-go does (cel-python would give int(null)
    == 0: a condition on an input with no value would silently pick a branch)."""
    from celpy.evaluation import base_functions
    convert = base_functions[name]

    def strict(value):
        if value is None:
            raise ValueError(f'no such overload: {name}(null) (the input has no value)')
        return convert(value)
    return strict


@functools.lru_cache(maxsize=512)
def _program(expression: str):
    celpy, env = _cel()
    try:
        ast = env.compile(expression)
    except celpy.CELParseError as e:
        raise ExpressionError(f'cannot parse CEL expression {expression!r}: {" ".join(str(e).split())}') from None
    functions = {'parseJson': _parse_json, **{n: _no_null(n) for n in ('int', 'uint', 'double', 'string', 'bool')}}
    return env.program(ast, functions=functions)


def to_python(value: Any) -> Any:
    """CEL value -> plain JSON value."""
    from celpy import celtypes
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.ListType):
        return [to_python(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(k): to_python(v) for k, v in value.items()}
    if value is None or isinstance(value, type(None)):
        return None
    return value


def _evaluate(expression: str, activation: dict) -> Any:
    celpy, _ = _cel()
    program = _program(expression)
    try:
        result = program.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    except Exception as e:  # cel-python raises several types; all mean "cannot evaluate"
        raise ExpressionError(f'cannot evaluate {expression!r}: {" ".join(str(e).split())}') from None
    if isinstance(result, celpy.CELEvalError):
        raise ExpressionError(f'cannot evaluate {expression!r}: {" ".join(str(result.args).split())}')
    return result


def evaluate_condition(expression: str, parameter_values: dict) -> bool:
    """A trigger condition over the task's resolved input parameters."""
    from celpy import celtypes
    result = _evaluate(expression, {'inputs': {'parameter_values': parameter_values}})
    if not isinstance(result, celtypes.BoolType):
        raise ExpressionError(f'condition {expression!r} gave {to_python(result)!r}, not a boolean')
    return bool(result)


def select(expression: str, value: Any) -> Any:
    """A parameterExpressionSelector applied to a value (KFP passes it as string_value)."""
    string_value = value if isinstance(value, str) else json.dumps(value)
    return to_python(_evaluate(expression, {'string_value': string_value}))
