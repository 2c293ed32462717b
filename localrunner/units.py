"""Quantities, parsed in one place: Kubernetes memory and cpu quantities (what KFP's
set_memory_limit / set_cpu_limit accept), byte sizes (`--max-size`) and durations
(`--cache-max-age`, `--older-than`, retry backoff)."""
from __future__ import annotations

import math
import re
from typing import Any, Optional

# Kubernetes quantity suffixes (decimal and binary), and the byte-size spellings people type
_BYTES = {'': 1, 'b': 1,
          'k': 10**3, 'kb': 10**3, 'm': 10**6, 'mb': 10**6, 'g': 10**9, 'gb': 10**9, 't': 10**12, 'tb': 10**12,
          'p': 10**15, 'pb': 10**15,
          'ki': 2**10, 'kib': 2**10, 'mi': 2**20, 'mib': 2**20, 'gi': 2**30, 'gib': 2**30,
          'ti': 2**40, 'tib': 2**40, 'pi': 2**50, 'pib': 2**50}
_QUANTITY = re.compile(r'\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*')
_DURATION_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
# A number written as text (a -p value, an output parameter file), as JSON and Go's strconv
# read one: ASCII digits only (Python's int() and float() also take '1_000' and '٥')
INTEGER_TEXT = re.compile(r'[+-]?[0-9]+', re.ASCII)
DECIMAL_TEXT = re.compile(r'[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?', re.ASCII)
NOT_FINITE_TEXT = frozenset({'inf', 'infinity', 'nan'})       # strconv.ParseFloat's, any case and sign


def parse_bytes(text: Any, what: str = 'size') -> Optional[int]:
    """'2Gi', '500M', '1.5G', '1024' -> bytes; None for None/''; ValueError otherwise."""
    if text in (None, ''):
        return None
    m = _QUANTITY.fullmatch(str(text))
    if not m or m.group(2).lower() not in _BYTES:
        raise ValueError(f'not a {what}: {text!r} (e.g. 512Mi, 2G, 10GiB)')
    value = float(m.group(1)) * _BYTES[m.group(2).lower()]
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'not a {what}: {text!r}')
    return int(value)


def parse_cpu(text: Any) -> Optional[float]:
    """'500m', '2', '0.5' -> cores; None for None/''; ValueError otherwise."""
    if text in (None, ''):
        return None
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 1000 if t.endswith('m') else float(t)
    except ValueError:
        raise ValueError(f'not a cpu quantity: {text!r} (e.g. 500m, 2)') from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'not a cpu quantity: {text!r}')
    return value


def parse_duration(text: Any) -> float:
    """'90s', '15m', '12h', '7d', '2w' or plain seconds -> seconds (>= 0)."""
    t = str(text).strip().lower()
    try:
        value = float(t[:-1]) * _DURATION_UNITS[t[-1]] if t and t[-1] in _DURATION_UNITS else float(t)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'not a duration: {text!r} (use e.g. 90s, 15m, 12h, 7d)')
    return value
