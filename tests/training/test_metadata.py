"""What a run records about its checkout: the commit, ``-dirty``, and which files changed."""
import shutil
import subprocess

import pytest

from pyg_docre.training.metadata import git_commit, git_modified_files, run_environment

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "naïve name.py").write_text("y = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_clean_checkout(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo / "pkg") == head
    assert git_modified_files(repo / "pkg") == []
    env = run_environment("cpu", 66, directory=repo / "pkg")
    assert env["git_commit"] == head and env["git_modified"] == []


def test_modified_files_are_named_from_the_repository_root(repo):
    (repo / "results" / "table.md").write_text("| b |\n")
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    (repo / "pkg" / "naïve name.py").write_text("y = 2\n")   # named as it is, not quoted
    git(repo, "add", "pkg/code.py")                       # staged changes count too
    (repo / "untracked.txt").write_text("not tracked\n")  # untracked files do not
    head = git(repo, "rev-parse", "HEAD")
    for directory in (repo, repo / "pkg"):
        assert git_commit(directory) == head + "-dirty"
        assert git_modified_files(directory) == ["pkg/code.py", "pkg/naïve name.py",
                                                "results/table.md"]


def test_outside_a_checkout(tmp_path):
    assert git_modified_files(tmp_path) is None and git_commit(tmp_path) is None
