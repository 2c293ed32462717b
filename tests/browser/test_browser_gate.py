"""The browser tests skip with the reason when Chromium is missing -- and fail under CI=true."""
import pytest

from tests.browser import chromium


def test_missing_chromium_skips_locally_and_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(chromium, 'CHROMIUM', str(tmp_path / 'no-chromium'))
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match='no-chromium not found .*apt-get install -y chromium'):
        chromium.require_browser()
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='CI=true: the browser tests must run in CI'):
        chromium.require_browser()
