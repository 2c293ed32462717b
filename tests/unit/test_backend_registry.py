"""backends/registry.py: localrunner's own backends are found without an entry-point scan,
and that table is exactly what pyproject.toml registers (one registry, not two)."""
from importlib import metadata

import pytest

from localrunner.backends import registry
from localrunner.backends.base import Backend
from localrunner.errors import UsageError


def test_the_built_in_table_is_what_the_distribution_registers():
    registered = {ep.name: ep.value for ep in metadata.distribution('localrunner').entry_points
                  if ep.group == registry.GROUP}
    assert registry.BUILT_IN == registered


@pytest.mark.parametrize('name', ['subprocess', 'auto', 'docker'])
def test_each_built_in_loads_as_a_backend(name):
    cls = registry.backend_class(name)
    assert isinstance(cls, type) and issubclass(cls, Backend)


def test_an_unknown_name_still_lists_what_the_entry_points_offer():
    with pytest.raises(UsageError) as e:
        registry.backend_class('no-such-backend')
    assert 'unknown backend; available:' in str(e.value) and 'subprocess' in str(e.value)
