"""expressions.py: the CEL KFP compiles dsl.If/Elif/Else and loop-item fields into
(kfp/compiler/pipeline_spec_builder.py _single_binary_operation_to_cel_condition), evaluated
with a real CEL implementation."""
import json

import pytest

from localrunner.engine.expressions import ExpressionError, evaluate_condition, select


def v(name: str) -> str:
    return f"inputs.parameter_values['pipelinechannel--{name}']"


@pytest.mark.parametrize('expression,values,expected', [
    # strings
    (f"{v('coin')} == 'heads'", {'coin': 'heads'}, True),
    (f"{v('coin')} == 'heads'", {'coin': 'tails'}, False),
    (f"{v('coin')} != 'plain'", {'coin': 'plain'}, False),
    (f"{v('coin')} == '3'", {'coin': '3'}, True),
    # ints: KFP casts an integer parameter with int(), as values travel as doubles
    (f"int({v('n')}) == 2", {'n': 2}, True),
    (f"int({v('n')}) == 2", {'n': 2.0}, True),
    (f"int({v('n')}) > 3", {'n': 4.0}, True),
    (f"int({v('n')}) > 3", {'n': 3}, False),
    (f"int({v('n')}) < 3", {'n': 2}, True),
    (f"int({v('n')}) >= 3", {'n': 3.0}, True),
    (f"int({v('n')}) <= 3", {'n': 4}, False),
    # floats, and an int promoted to double when compared with a float literal
    (f"{v('ratio')} < 0.5", {'ratio': 0.25}, True),
    (f"{v('ratio')} > 0.5", {'ratio': 0.25}, False),
    (f"double(int({v('pick')})) >= 2.5", {'pick': 3}, True),
    (f"double(int({v('pick')})) >= 2.5", {'pick': 2.0}, False),
    # booleans
    (f"{v('flag')} == true", {'flag': True}, True),
    (f"{v('flag')} == true", {'flag': False}, False),
    # Elif/Else: the earlier branches negated and joined with &&
    (f"!({v('word')} == 'a') && !({v('word')} == 'b')", {'word': 'c'}, True),
    (f"!({v('word')} == 'a') && {v('word')} == 'b'", {'word': 'b'}, True),
    (f"!(int({v('n')}) > 3) && int({v('n')}) == 2", {'n': 2}, True),
    (f"!(int({v('n')}) > 3) && int({v('n')}) == 2", {'n': 5}, False),
    # || is CEL too
    (f"{v('word')} == 'a' || {v('word')} == 'b'", {'word': 'b'}, True),
    (f"{v('word')} == 'a' || {v('word')} == 'b'", {'word': 'z'}, False),
])
def test_conditions(expression, values, expected):
    assert evaluate_condition(expression, {f'pipelinechannel--{k}': x for k, x in values.items()}) is expected


def test_a_condition_on_a_missing_input_is_an_error():
    with pytest.raises(ExpressionError, match='cannot evaluate'):
        evaluate_condition(f"{v('coin')} == 'heads'", {})


def test_comparing_a_double_with_an_int_literal_is_an_error_not_a_guess():
    # why KFP writes int(...): CEL has no double == int overload
    with pytest.raises(ExpressionError):
        evaluate_condition(f"{v('n')} == 3", {'pipelinechannel--n': 3.0})


def test_a_condition_must_give_a_boolean():
    with pytest.raises(ExpressionError, match='not a boolean'):
        evaluate_condition(f"int({v('n')}) + 1", {'pipelinechannel--n': 1})


def test_a_malformed_expression_is_an_error_naming_it():
    with pytest.raises(ExpressionError, match='cannot parse'):
        evaluate_condition(f"{v('n')} ==", {'pipelinechannel--n': 1})


def test_int_of_a_null_input_is_an_error():
    """cel-python alone gives int(null) == 0; CEL (cel-go, in KFP) has no int(null)."""
    with pytest.raises(ExpressionError):
        evaluate_condition(f"int({v('n')}) < 5", {'pipelinechannel--n': None})


# ----------------------------------------------------------------- loop-item field selectors
ITEM = {'n': 2, 'label': 'b', 'ratio': 0.5, 'ok': True, 'tags': ['x', 'y'], 'nested': {'k': None}}


@pytest.mark.parametrize('field,expected', [('n', 2), ('label', 'b'), ('ratio', 0.5), ('ok', True),
                                            ('tags', ['x', 'y']), ('nested', {'k': None})])
def test_select_a_field_of_a_loop_item(field, expected):
    expression = f'parseJson(string_value)["{field}"]'
    assert select(expression, ITEM) == expected
    # the driver hands the item over as JSON text; a dict and its JSON select the same
    assert select(expression, json.dumps(ITEM)) == expected


def test_a_selected_value_comes_back_as_a_plain_python_value():
    value = select('parseJson(string_value)["tags"]', ITEM)
    assert type(value) is list and all(type(t) is str for t in value)
    assert type(select('parseJson(string_value)["n"]', ITEM)) is int
    assert type(select('parseJson(string_value)["ok"]', ITEM)) is bool


def test_select_errors():
    with pytest.raises(ExpressionError, match='no such key|cannot evaluate'):
        select('parseJson(string_value)["absent"]', ITEM)
    with pytest.raises(ExpressionError, match='not JSON'):
        select('parseJson(string_value)["n"]', 'plain text')
