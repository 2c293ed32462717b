"""layout.py: names become paths only through within(), which refuses to leave its base."""
import os

import pytest

from localrunner.layout import PathEscape, RootLayout, check_name, split_task_path, within


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', '/abs', 'a\\b', 'nul\x00x', 'tab\tx', 'x' * 201])
def test_check_name_refuses_what_is_not_one_component(name):
    with pytest.raises(PathEscape):
        check_name(name, 'task')


@pytest.mark.parametrize('name', ['train-model', 'for-loop-2.0', 'Output', 'a.b.c', 'ünïcode', 'x' * 200])
def test_check_name_takes_plain_names(name):
    assert check_name(name) == name


def test_task_paths_are_split_and_checked():
    assert split_task_path('for-loop-2.0/condition-3/train') == ['for-loop-2.0', 'condition-3', 'train']
    for bad in ('../x', 'a//b', '/abs', 'a/../../b'):
        with pytest.raises(PathEscape):
            split_task_path(bad)


def test_within_refuses_a_planted_symlink_that_leaves_the_base(tmp_path):
    base = tmp_path / 'root'
    outside = tmp_path / 'outside'
    base.mkdir()
    outside.mkdir()
    os.symlink(outside, base / 'link')
    with pytest.raises(PathEscape):
        within(str(base), 'link', 'file')
    os.symlink(base / 'ok-target', base / 'inner')       # a link that stays inside is fine
    assert within(str(base), 'inner') == str(base / 'inner')


def test_the_run_layout(tmp_path):
    root = RootLayout(str(tmp_path / 'r'))
    run = root.run('p-1')
    task = run.task('loop.0/train')
    assert task.dir == str(tmp_path / 'r' / 'runs' / 'p-1' / 'tasks' / 'loop.0' / 'train')
    assert task.out == os.path.join(task.dir, 'out')
    assert task.log(2) == os.path.join(task.dir, 'logs', 'attempt-2.log')
    assert task.artifact('model', 1) == os.path.join(task.out, 'artifacts', 'model.1')
    assert task.parameter('Output') == os.path.join(task.out, 'parameters', 'Output')
    with pytest.raises(PathEscape):
        task.artifact('../../escape')
    with pytest.raises(PathEscape):
        root.run('../other')
    with pytest.raises(PathEscape):
        root.pvc('/etc')
    assert root.pvc('my-claim') == str(tmp_path / 'r' / 'pvcs' / 'my-claim')


def test_run_ids_are_listed_oldest_first_and_skip_links(tmp_path):
    root = RootLayout(str(tmp_path))
    os.makedirs(root.runs_dir)
    for i, name in enumerate(['b', 'a', 'c']):
        os.mkdir(os.path.join(root.runs_dir, name))
        os.utime(os.path.join(root.runs_dir, name), (1000 + i, 1000 + i))
    os.symlink('/tmp', os.path.join(root.runs_dir, 'zz-link'))
    assert root.run_ids() == ['b', 'a', 'c']


def test_ensure_dirs_makes_each_folder_parents_included(tmp_path):
    from localrunner.layout import ensure_dirs
    task = tmp_path / 'runs' / 'r1' / 'tasks' / 'loop.3' / 'train'     # no parent exists yet
    ensure_dirs([str(task), str(task / 'out'), str(task / 'logs')])
    assert (task / 'out').is_dir() and (task / 'logs').is_dir()
    ensure_dirs([str(task), str(task / 'out')])                          # already there: fine, as makedirs
    assert sorted(p.name for p in task.iterdir()) == ['logs', 'out']


def test_ensure_dirs_refuses_a_file_where_a_folder_goes(tmp_path):
    from localrunner.layout import ensure_dirs
    (tmp_path / 'out').write_text('not a folder')
    with pytest.raises(FileExistsError):
        ensure_dirs([str(tmp_path / 'out')])
    assert (tmp_path / 'out').read_text() == 'not a folder'
