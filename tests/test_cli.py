"""The command line as a user meets it: one-line errors with exit code 2, results on disk, the report."""

import json

import pytest

from nanorepro.report.store import load_result


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "no_such_experiment"], "unknown experiment 'no_such_experiment'"),
        (["run", "dual_qdm_cliff", "--profile", "huge"], "unknown profile 'huge'"),
        (["run", "dual_qdm_cliff", "--profile", "gpu"], "unknown profile 'gpu' for dual_qdm_cliff"),
        (["run", "dual_qdm_cliff", "--set", "n_sttes=3"], "unknown config key 'n_sttes'"),
        (["run", "dual_qdm_cliff", "--set", "n_states=many"], "bad value for 'n_states'"),
        (["run", "dual_qdm_cliff", "--set", "horizons=20,10"], "horizons must be distinct, increasing"),
        (["run", "dual_qdm_cliff", "--seed", "-1"], "seed must be >= 0"),
        (["run", "dual_qdm_cliff", "--device", "tpu"], "unknown device 'tpu'"),
        (["run"], "Missing argument"),
        (["reproduce", "--only", "nope"], "unknown experiment 'nope'"),
        (["report", "--profile", "medium"], "unknown profile 'medium'"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    extra = ["--results", str(tmp_path)] if args[0] != "frobnicate" and len(args) > 1 else []
    code, out, err = cli(*args, *extra)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def systems_without_experiments() -> int:
    from nanorepro.experiments import SYSTEMS, registry

    return len({s.key for s in SYSTEMS} - {e.system for e in registry().values()})


def test_list_names_every_system(cli):
    code, out, _ = cli("list")
    assert code == 0
    assert "dual_qdm_cliff" in out and "reinvbc" in out
    assert out.count("not implemented") == systems_without_experiments()


def test_run_smoke_writes_a_valid_result(cli, tmp_path):
    code, out, _ = cli("run", "dual_qdm_cliff", "--profile", "smoke", "--seed", "1", "--results", str(tmp_path))
    assert code == 0
    result = load_result(tmp_path / "dual_qdm_cliff" / "smoke" / "seed1.json")
    assert result["seed"] == 1 and result["profile"] == "smoke" and result["overrides"] == []
    assert result["config"]["horizons"] == [5, 10]
    assert result["device"]["device"] == "cpu" and result["wall_time_s"] > 0
    assert {c["key"] for c in result["claim_checks"]} >= {"A1a", "A2", "A3a", "A4"}
    assert not list(tmp_path.rglob("*.ckpt.safetensors"))  # the checkpoint goes once the result is safe
    per_h = result["metrics"]["per_horizon"]
    assert set(per_h) == {"5", "10"}
    for horizon in per_h.values():
        assert set(horizon["learners"]) == {"bc", "iq_e", "iq_m", "dqdm", "ail"}


def test_overridden_runs_never_overwrite_profile_results(cli, tmp_path):
    code, out, _ = cli("run", "dual_qdm_cliff", "--profile", "smoke", "--set", "q_steps=20",
                       "--set", "ail_steps=10", "--results", str(tmp_path))
    assert code == 0
    [path] = tmp_path.glob("dual_qdm_cliff/smoke-custom-*/seed0.json")
    assert json.loads(path.read_text())["overrides"] == ["q_steps=20", "ail_steps=10"]
    assert not (tmp_path / "dual_qdm_cliff" / "smoke").exists()


def test_reproduce_skips_finished_runs_and_renders_the_report(cli, tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    args = ["reproduce", "--profile", "smoke", "--only", "dual_qdm_cliff", "--results", str(results), "--reports",
            str(reports)]
    code, _, err = cli(*args)
    assert code == 0
    first = (results / "dual_qdm_cliff" / "smoke" / "seed0.json").read_text()
    code, _, err = cli(*args)
    assert code == 0 and err.count("up to date") == 2
    assert (results / "dual_qdm_cliff" / "smoke" / "seed0.json").read_text() == first
    summary = (reports / "summary.md").read_text()
    assert summary.count("not implemented") == systems_without_experiments()
    assert "| **ReinVBC** |" in summary and "reinvbc: not run" in summary  # implemented, but not run here
    assert "| **Dual Q-DM** |" in summary and "(n=2)" in summary
    html = (reports / "index.html").read_text()
    assert "data:image/png;base64," in html and "src=\"http" not in html  # self-contained


def test_malformed_result_file_is_reported_by_name(cli, tmp_path):
    bad = tmp_path / "dual_qdm_cliff" / "smoke" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"schema": 1, "experiment": "dual_qdm_cliff"}))
    code, _, err = cli("report", "--profile", "smoke", "--results", str(tmp_path), "--reports",
                       str(tmp_path / "rep"))
    assert code == 2 and "seed0.json: missing field" in err


def test_claim_checks_that_do_not_apply_are_neither_passed_nor_missed():
    from nanorepro.common.experiment import ClaimCheck
    from nanorepro.report.render import threshold_text

    check = ClaimCheck("G1", "speed-up on a GPU", lambda runs: runs[0]["speedup"], ">=", 1.15,
                       applies=lambda runs: all(r["device"] == "cuda" for r in runs))
    cpu = check.evaluate([{"device": "cpu", "speedup": 0.9}])
    assert (cpu["passed"], cpu["value"], cpu["applicable"]) == (None, None, False)
    assert threshold_text(cpu) == "not applicable to these runs"
    gpu = check.evaluate([{"device": "cuda", "speedup": 1.2}])
    assert gpu["passed"] is True and gpu["value"] == 1.2 and threshold_text(gpu) == ">= 1.15"
