import pytest

from nanorepro.braking.experiment import CHECKS, HELD_OUT, lock_excess, mean_ratio, worst_surface_ratio


def fake_run(reinvbc_scale, lock=0.0, gate=1.02):
    roads = (*HELD_OUT, "dry_asphalt")

    def entry(distance, lock_fraction=0.0):
        return {"distance": distance, "lock_fraction": lock_fraction}

    evaluation = {
        "abs": {r: entry(100.0) for r in roads},
        "behaviour": {r: entry(110.0) for r in roads},
        "reinvbc": {r: entry(100.0 * reinvbc_scale.get(r, 1.0), lock) for r in roads},
    }
    return {"evaluation": evaluation, "gate": {"ratio": gate, "per_surface": {"dry_asphalt": gate}}}


def test_claim_measures_by_hand():
    runs = [fake_run({HELD_OUT[0]: 0.9}), fake_run({HELD_OUT[0]: 1.1, HELD_OUT[1]: 0.8}, lock=0.02, gate=0.85)]
    # per road, seed means: 1.0, 0.9, 1.0, 1.0 -> mean 0.975; worst 1.0
    assert mean_ratio("reinvbc")(runs) == pytest.approx(0.975)
    assert worst_surface_ratio(runs) == pytest.approx(1.0)
    assert lock_excess(runs) == pytest.approx(0.01)
    assert mean_ratio("reinvbc", base="behaviour")(runs) == pytest.approx(0.975 * 100 / 110)
    checks = {c.key: c.evaluate(runs) for c in CHECKS if c.key in ("C1", "C2", "C3", "C4", "C5")}
    assert checks["C1"]["passed"] and checks["C2"]["passed"] and checks["C3"]["passed"]
    assert checks["C4"]["passed"]  # 0.886 <= 0.95
    assert checks["C5"]["value"] == pytest.approx(0.15) and checks["C5"]["passed"] is False
