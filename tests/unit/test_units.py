"""units.py: one parser per kind of quantity."""
import pytest

from localrunner.units import parse_bytes, parse_cpu, parse_duration


@pytest.mark.parametrize('text,expected', [('2Gi', 2 * 2**30), ('500M', 500 * 10**6), ('1.5G', 1_500_000_000),
                                           ('1024', 1024), ('10GiB', 10 * 2**30), ('128974848', 128974848),
                                           ('129e6', 129_000_000), ('0', 0)])
def test_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize('text', ['lots', '-1G', '1X', 'G', '1.2.3M', 'nan', 'inf'])
def test_bad_bytes(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_cpu_and_empty_values():
    assert parse_cpu('500m') == 0.5 and parse_cpu('2') == 2.0 and parse_cpu(1.5) == 1.5
    assert parse_cpu(None) is None and parse_bytes('') is None
    for bad in ('fast', '-1', 'm'):
        with pytest.raises(ValueError):
            parse_cpu(bad)


@pytest.mark.parametrize('text,seconds', [('90s', 90), ('15m', 900), ('12h', 43200), ('7d', 604800),
                                          ('2w', 1209600), ('30', 30), ('0.5s', 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['soon', '-5m', '', 'nanh', 'infs', '5x'])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
