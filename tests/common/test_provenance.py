import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

import nanorepro.common.provenance as provenance


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_commit_is_dirty_for_code_changes_not_for_results(tmp_path):
    code = tmp_path / "src" / "nanorepro" / "common" / "provenance.py"
    code.parent.mkdir(parents=True)
    shutil.copy(provenance.__file__, code)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "seed0.json").write_text("{}")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")

    def commit() -> str:
        spec = importlib.util.spec_from_file_location("provenance_copy", code)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.git_commit()

    (tmp_path / "results" / "seed0.json").write_text('{"another": "seed"}')
    assert not commit().endswith("+dirty")
    code.write_text(code.read_text() + "\n# edited\n")
    assert commit().endswith("+dirty")
