"""layout.py's reading of what a task wrote, on real files: every component below the base
opened relative to its parent's descriptor with O_NOFOLLOW, so a planted link is refused
(naming where it pointed), a FIFO does not hang the host, and a link inside a folder output
may point only inside the out folder. Host logs are never opened through a link."""
import os
import stat

import pytest

from localrunner.layout import (PathEscape, RootLayout, check_links, fd_path, open_beneath, open_log,
                                read_beneath)


@pytest.fixture
def out(tmp_path):
    layout = RootLayout(str(tmp_path / 'root')).run('r').task('t')
    os.makedirs(os.path.join(layout.out, 'artifacts'))
    return layout


def test_a_regular_file_is_read_and_a_checked_descriptor_reopens_it(out, sentinel):
    path = os.path.join(out.out, 'artifacts', 'model')
    with open(path, 'w') as f:
        f.write('weights')
    assert read_beneath(out.out, path, 'output', 100) == b'weights'
    fd = open_beneath(out.out, path, 'output')
    try:
        with open(fd_path(fd)) as f:
            assert f.read() == 'weights'
    finally:
        os.close(fd)
    with pytest.raises(ValueError, match='larger than 3 bytes'):
        read_beneath(out.out, path, 'output', 3)
    sentinel.assert_unchanged()


@pytest.mark.parametrize('where', ['file', 'folder', 'base'])
def test_a_link_anywhere_on_the_way_is_refused_naming_its_target(where, out, sentinel):
    artifacts = os.path.join(out.out, 'artifacts')
    if where == 'file':
        os.symlink(sentinel.secret, os.path.join(artifacts, 'model'))
        path, base = os.path.join(artifacts, 'model'), out.out
    elif where == 'folder':
        os.rmdir(artifacts)
        os.symlink(sentinel.dir, artifacts)
        path, base = os.path.join(artifacts, 'secret.txt'), out.out
    else:
        os.symlink(sentinel.dir, os.path.join(out.dir, 'linked-out'))
        path, base = os.path.join(out.dir, 'linked-out', 'secret.txt'), os.path.join(out.dir, 'linked-out')
    with pytest.raises(PathEscape) as e:
        read_beneath(base, path, "output artifact 'model'", 1 << 20)
    if where != 'base':
        assert "output artifact 'model'" in str(e.value) and f'is a link to {sentinel.dir}' in str(e.value)
    sentinel.assert_unchanged()


def test_a_fifo_is_refused_without_hanging(out, sentinel):
    fifo = os.path.join(out.out, 'executor_output.json')
    os.mkfifo(fifo)
    with pytest.raises(PathEscape, match='is a FIFO'):
        read_beneath(out.out, fifo, 'executor output', 1 << 20)
    sentinel.assert_unchanged()


def test_links_inside_a_folder_may_point_only_inside_the_out_folder(out, sentinel):
    folder = os.path.join(out.out, 'artifacts', 'model')
    os.makedirs(os.path.join(folder, 'sub'))
    os.symlink('../sub', os.path.join(folder, 'sub', 'loop'))        # inside: kept
    os.symlink('../../executor_output.json', os.path.join(folder, 'up'))      # inside the out folder
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check_links(fd, folder, out.out, 'x')
        os.symlink(os.path.relpath(sentinel.secret, os.path.join(folder, 'sub')), os.path.join(folder, 'sub', 'esc'))
        with pytest.raises(PathEscape, match=r"sub/esc is a link to \.\./.*outside the task's out folder"):
            check_links(fd, folder, out.out, 'x')
    finally:
        os.close(fd)
    sentinel.assert_unchanged()


def test_a_log_link_is_replaced_never_written_through(out, sentinel):
    os.makedirs(out.logs_dir)
    log = out.log(2)
    os.symlink(sentinel.secret, log)
    with open_log(log) as f:
        f.write(b'attempt 2\n')
    assert not os.path.islink(log) and stat.S_ISREG(os.lstat(log).st_mode)
    assert open(log, 'rb').read() == b'attempt 2\n'
    sentinel.assert_unchanged()


def test_a_logs_folder_leading_outside_is_refused(out, sentinel):
    os.symlink(sentinel.dir, out.logs_dir)
    with pytest.raises(PathEscape, match='leads outside'):
        out.log(1)
    sentinel.assert_unchanged()


def test_a_refusal_naming_what_a_task_chose_stays_one_line(out, sentinel):
    folder = os.path.join(out.out, 'artifacts', 'model')
    os.makedirs(folder)
    os.symlink(sentinel.secret + '\nforged line', os.path.join(folder, 'a\nb'))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(PathEscape) as e:
            check_links(fd, folder, out.out, 'x')
    finally:
        os.close(fd)
    assert '\n' not in str(e.value) and 'a\\nb is a link to' in str(e.value)
    sentinel.assert_unchanged()
