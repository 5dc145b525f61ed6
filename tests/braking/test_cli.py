"""The practitioner's path end to end: make logs, train on them, evaluate on a new surface."""





def test_make_data_train_evaluate(cli, tmp_path):
    data, policy = tmp_path / "logs.npz", tmp_path / "policy.safetensors"
    code, out, err = cli("braking", "make-data", "--out", str(data), "--stops", "10", "--abs-grid", "small")
    assert code == 0 and "10 stops" in out and data.exists()
    tiny = ["members=2", "elites=1", "model_hidden=16", "model_layers=2", "model_steps=20", "unroll=2", "updates=40",
            "rollout_batch=4", "select_every=20", "sac_hidden=16"]
    code, out, err = cli("braking", "train", "--data", str(data), "--out", str(policy),
                         *(x for kv in tiny for x in ("--set", kv)))
    assert code == 0, err
    assert policy.exists() and not (tmp_path / "policy.safetensors.ckpt.safetensors").exists()
    assert "model gate" in out
    code, out, err = cli("braking", "evaluate", "--policy", str(policy), "--surface", "wet_cobblestone",
                         "--surface", '{"c1": 1.0, "c2": 20, "c3": 0.4}', "--speeds", "20,20,1", "--abs-grid", "small")
    assert code == 0, err
    assert "wet_cobblestone" in out and "custom" in out


def test_bad_practitioner_input(cli, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"junk")
    code, _, err = cli("braking", "train", "--data", str(tmp_path / "bad.npz"))
    assert code == 2 and "not a readable .npz" in err
    code, _, err = cli("braking", "evaluate", "--policy", str(tmp_path / "bad.npz"), "--surface", "snow",
                       "--abs-grid", "small")
    assert code == 2 and "cannot read checkpoint" in err
    code, _, err = cli("braking", "evaluate", "--policy", "p", "--surface", "snow", "--speeds", "fast")
    assert code == 2 and "bad --speeds" in err
    code, _, err = cli("braking", "train", "--data", "x.npz", "--set", "pessimism=maybe")
    assert code == 2 and "choose from" in err
