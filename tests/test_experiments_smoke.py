"""Every registered experiment's smoke profile runs through the registry, stores a valid result
and renders its report section (plots and tables included)."""

import importlib.util

import pytest

from nanorepro.common.progress import ProgressBoard
from nanorepro.experiments import registry
from nanorepro.report.render import render_report
from nanorepro.report.store import load_runs

DATA_PACKAGES = {"sigma_movielens": "recbole"}  # MovieLens-100k ships in it; `make install` installs it


@pytest.mark.parametrize("name", sorted(registry()))
def test_smoke_profile_end_to_end(name, tmp_path):
    from nanorepro.runner import run_one

    package = DATA_PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{name} reads data from the {package} wheel: pip install --no-deps {package}")
    exp = registry()[name]
    with ProgressBoard(enabled=False) as board:
        outcome = run_one(exp, "smoke", 0, results_root=tmp_path, board=board)
    result = outcome.result
    assert result["experiment"] == name and result["profile"] == "smoke"
    assert [c["key"] for c in result["claim_checks"]] == [c.key for c in exp.checks]
    assert all(c["value"] is None or isinstance(c["value"], float | int) for c in result["claim_checks"])
    assert load_runs(tmp_path, name, "smoke")[0]["metrics"] == result["metrics"]
    html, md = render_report(tmp_path, tmp_path / "reports", "smoke")
    text = md.read_text()
    assert f"`{name}`" in text and "Verdict" in text
    if exp.plot is not None:
        assert list((tmp_path / "reports" / "plots").glob(f"{name}-*.png"))
