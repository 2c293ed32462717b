"""Pipeline parameters: `-p NAME=VALUE`, `--params-file`, IR defaults, typed by the IR."""
from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any, Mapping

from localrunner.errors import UsageError
from localrunner.spec import load_yaml_documents, unique_keys
from localrunner.units import DECIMAL_TEXT, INTEGER_TEXT, NOT_FINITE_TEXT

if TYPE_CHECKING:
    from localrunner.spec.views import ParameterDef

_TRUE = {'true', '1', 'yes', 'y', 'on'}
_FALSE = {'false', '0', 'no', 'n', 'off'}


def read_params_file(path: str) -> dict:
    from localrunner.user_files import read_text
    try:
        text = read_text(path)
    except OSError as e:
        raise UsageError(f'{path}: cannot read params file: {e.strerror or e}') from None
    except UnicodeDecodeError:
        raise UsageError(f'{path}: cannot read params file: not UTF-8 text') from None
    except ValueError as e:
        raise UsageError(f'{path}: cannot read params file: {e}') from None
    import yaml                         # here, not at import: a run without a params file never needs it
    try:
        docs = ([json.loads(text, object_pairs_hook=unique_keys)] if text.lstrip().startswith('{')
                else load_yaml_documents(text))
    except (ValueError, yaml.YAMLError) as e:
        raise UsageError(f'{path}: malformed params file: {" ".join(str(e).split())[:200]}') from None
    except RecursionError:
        raise UsageError(f'{path}: malformed params file: nested too deeply') from None
    if len(docs) > 1:
        raise UsageError(f'{path}: params file must hold one mapping, not {len(docs)} YAML documents')
    data = docs[0] if docs else None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f'{path}: params file must hold a mapping of parameter names to values')
    for name, value in data.items():
        if not isinstance(name, str):
            raise UsageError(f'{path}: parameter names must be text, not {name!r}')
        why = not_json(value)
        if why:
            raise UsageError(f'{path}: parameter {name!r}: {why}')
    return data


def not_json(value: Any, depth: int = 0) -> str:
    """Why VALUE, read from a YAML file, is not JSON data ('' when it is): YAML also reads
    dates, timestamps, binary and sets, which no KFP parameter holds."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return ''
    if depth > 500:
        return 'nested too deeply'
    if isinstance(value, list):
        return next((why for why in (not_json(v, depth + 1) for v in value) if why), '')
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f'{k!r} is a YAML {type(k).__name__} key; JSON keys are text'
            why = not_json(v, depth + 1)
            if why:
                return why
        return ''
    kind = type(value).__name__
    hint = ' (quote it to pass it as text)' if kind in ('date', 'datetime') else ''
    return f'{value} is a YAML {kind}, not JSON data{hint}'


def assignment(text: str, flag: str, form: str = 'NAME=VALUE') -> tuple[str, str]:
    """One NAME=VALUE of the command line (-p, -a, --secret, --config-map, --pvc,
    --image-map, --localrunner-image): the name (trimmed, not empty) and everything after the
    first '='. UsageError naming the flag and the text otherwise. The one place it is read."""
    name, sep, value = text.partition('=')
    if not sep or not name.strip():
        raise UsageError(f'{flag} {text}: expected {form}')
    return name.strip(), value


def parse_cli_params(pairs: list[str]) -> dict[str, str]:
    return dict(assignment(pair, '-p') for pair in pairs)


def convert(name: str, ptype: str, value: Any, from_text: bool) -> Any:
    """Converts one value to the IR's declared type, or raises UsageError naming it."""
    def bad(why: str = '') -> UsageError:
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        return UsageError(f'parameter {name!r}: {shown!r} is not a valid {ptype}{why}')

    if ptype == 'STRING':
        if isinstance(value, str):
            return value
        if from_text:
            return str(value)
        raise bad()
    if ptype == 'NUMBER_INTEGER':
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and INTEGER_TEXT.fullmatch(value.strip()):
            return int(value.strip())
        raise bad()
    if ptype == 'NUMBER_DOUBLE':
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            if not DECIMAL_TEXT.fullmatch(value.strip()):
                raise bad(' (must be finite)' if value.strip().lower().lstrip('+-') in NOT_FINITE_TEXT else '')
            result = float(value.strip())
            if math.isnan(result) or math.isinf(result):
                raise bad(' (must be finite)')
            return result
        raise bad()
    if ptype == 'BOOLEAN':
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if ptype in ('LIST', 'STRUCT'):
        want = list if ptype == 'LIST' else dict
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise bad(' (expected JSON)') from None
        if not isinstance(value, want):
            raise bad()
        return value
    return value


def resolve_pipeline_params(declared: Mapping[str, 'ParameterDef'], cli: dict[str, str],
                            from_file: dict) -> dict[str, Any]:
    """Returns the root DAG's parameter values (`declared`: its input parameters,
    spec.views.Component.inputs.parameters): given values converted, defaults filled.
    Missing required, unknown and ill-typed values raise UsageError naming them."""
    known = sorted(declared)
    unknown = sorted((set(cli) | set(from_file)) - set(declared))
    if unknown:
        listing = ', '.join(known) if known else '(none)'
        raise UsageError(f'unknown parameter {unknown[0]!r}; this pipeline takes: {listing}')
    values = {}
    for name, d in declared.items():
        if name in cli:
            values[name] = convert(name, d.type, cli[name], from_text=True)
        elif name in from_file:
            values[name] = convert(name, d.type, from_file[name], from_text=False)
        elif d.has_default:
            values[name] = convert(name, d.type, d.default, from_text=False)
        elif d.optional:
            continue
        else:
            hint = f' (-p {name}=...)'
            raise UsageError(f'missing required parameter {name!r} of type {d.type}{hint}; '
                             f'this pipeline takes: {", ".join(known)}')
    return values


def expand_path(value: str) -> str:
    return os.path.abspath(os.path.expanduser(value))


def resolve_root_artifacts(input_defs: dict, pairs: list[str]) -> dict:
    """`--artifact NAME=PATH` for a pipeline that takes artifacts: typed by the IR, identified
    by content (the digest enters the cache key, the path does not)."""
    from localrunner.engine.model import Artifact, local_path
    from localrunner_cache import digest_file, digest_tree
    declared = input_defs.get('artifacts', {}) or {}
    given: dict[str, list] = {}
    for pair in pairs:
        name, path = assignment(pair, '--artifact', 'NAME=PATH')
        if name not in declared:
            listing = ', '.join(sorted(declared)) or '(none)'
            raise UsageError(f'unknown input artifact {name!r}; this pipeline takes: {listing}')
        path = expand_path(local_path(path) or path)
        if not os.path.exists(path):
            raise UsageError(f'--artifact {name}: {path} does not exist')
        schema = declared[name].get('artifactType', {})
        is_dir = os.path.isdir(path)
        given.setdefault(name, []).append(Artifact(
            name=name, schema_title=schema.get('schemaTitle', 'system.Artifact'),
            schema_version=schema.get('schemaVersion', '0.0.1'), uri=path, metadata={},
            digest=digest_tree(path) if is_dir else digest_file(path), kind='tree' if is_dir else 'file'))
    for name, d in declared.items():
        if name not in given and not d.get('isOptional'):
            raise UsageError(f'missing required input artifact {name!r} (--artifact {name}=PATH)')
        if name in given and len(given[name]) > 1 and not d.get('isArtifactList'):
            raise UsageError(f'--artifact {name}: given {len(given[name])} times but takes one artifact')
    return given
