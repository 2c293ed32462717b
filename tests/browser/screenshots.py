"""The screenshots in docs/ and the README, made the way the browser tests look at the page:

    python3 -m tests.browser.screenshots [OUT_DIR]      # from the repository root; default docs/

Runs examples/ml_pipeline.yaml twice (the second run is served from the cache but for the
deployment) and tests/report_pipelines.py's `visuals` once (confusion matrix, ROC curve,
HTML and Markdown artifacts), writes their run pages, and photographs them in headless
Chromium (tests/browser/chromium.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from tests.browser.chromium import chromium, missing

WIDTH = 1240


def _run(*args: str) -> None:
    proc = subprocess.run([sys.executable, '-m', 'localrunner.cli', 'run', *args, '-q'],
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f'localrunner run {" ".join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}')


def _shoot(driver, page: str, out: str, height: int, element: str = '') -> None:
    from selenium.webdriver.common.by import By
    driver.set_window_size(WIDTH, height)
    driver.get('file://' + page)
    if element:
        driver.find_element(By.CSS_SELECTOR, element).screenshot(out)
    else:
        driver.save_screenshot(out)
    print(out)


def main(out_dir: str = 'docs') -> int:
    reason = missing()
    if reason:
        sys.exit(f'screenshots: {reason}')
    out_dir = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory(prefix='localrunner-shots-') as tmp:
        root = os.path.join(tmp, 'root')
        first, second = os.path.join(tmp, 'first.html'), os.path.join(tmp, 'second.html')
        _run('examples/ml_pipeline.yaml', '--root', root, '--report', first)
        _run('examples/ml_pipeline.yaml', '--root', root, '--report', second)
        from kfp import compiler

        from tests.report_pipelines import visuals
        spec = os.path.join(tmp, 'visuals.yaml')
        compiler.Compiler().compile(visuals, package_path=spec)
        visual = os.path.join(tmp, 'visuals.html')
        _run(spec, '--root', root, '-p', 'hostile=<h2>an HTML artifact</h2><p>drawn in a sandboxed frame</p>',
             '--report', visual)
        with chromium(WIDTH, 900) as driver:
            _shoot(driver, first, os.path.join(out_dir, 'run-page.png'), 1150)
            _shoot(driver, second, os.path.join(out_dir, 'run-page-cached.png'), 900, 'div.graph')
            _shoot(driver, visual, os.path.join(out_dir, 'run-page-visualizations.png'), 2200, 'div.cards')
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
