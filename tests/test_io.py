"""Atomic writes leave the old file or the complete new one, never a partial file."""
import os

import pytest

from pyg_docre.io import atomic_write, atomic_write_text


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "first")
    assert path.read_text() == "first"
    atomic_write(path, lambda f: f.write(b"second"), binary=True)
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")

    def fail_halfway(f):
        f.write("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, fail_halfway)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_permissions_follow_the_umask(tmp_path):
    path = atomic_write_text(tmp_path / "out.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_atomic_write_dir_replaces_the_whole_folder(tmp_path):
    from pyg_docre.io import atomic_write_dir
    target = tmp_path / "ckpt"
    atomic_write_dir(target, lambda d: (d / "a.txt").write_text("1"))
    atomic_write_dir(target, lambda d: (d / "b.txt").write_text("2"))
    assert sorted(os.listdir(target)) == ["b.txt"]          # no file of the old version left
    assert os.listdir(tmp_path) == ["ckpt"]                 # no temporary or old folder left
    mask = os.umask(0)
    os.umask(mask)
    assert (target / "b.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_dir_write_keeps_the_old_folder(tmp_path):
    from pyg_docre.io import atomic_write_dir
    target = tmp_path / "ckpt"
    atomic_write_dir(target, lambda d: (d / "a.txt").write_text("old"))

    def fail_halfway(d):
        (d / "a.txt").write_text("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write_dir(target, fail_halfway)
    assert (target / "a.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt"]


def test_recover_dir_restores_the_previous_version_after_a_crash_between_renames(tmp_path):
    from pyg_docre.io import recover_dir
    old = tmp_path / ".ckpt.old"
    old.mkdir()
    (old / "a.txt").write_text("old")
    recover_dir(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "a.txt").read_text() == "old" and not old.exists()
