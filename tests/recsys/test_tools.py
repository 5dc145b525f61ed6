
from nanorepro.recsys.data import WorldConfig, make_world


def write_atomic(tmp_path, n_users=60):
    world = make_world(WorldConfig(n_items=120, n_users=n_users, n_brands=10, min_length=5, max_length=10), seed=0)
    inter = tmp_path / "shop.inter"
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u, seq in enumerate(world.sequences):
        lines += [f"u{u}\tp{i}\t{t}" for t, i in enumerate(seq)]
    inter.write_text("\n".join(lines) + "\n")
    item = tmp_path / "shop.item"
    item.write_text("item_id:token\ttitle:token_seq\n" + "".join(
        f"p{i}\t{title}\n" for i, title in enumerate(world.catalogue.titles)))
    return inter, item, world



def test_train_then_recommend_on_atomic_files(tmp_path, cli):
    inter, item, world = write_atomic(tmp_path)
    model = tmp_path / "model.safetensors"
    code, out, _ = cli("recsys", "train", "--inter", str(inter), "--item", str(item), "--out", str(model),
                           "--set", "epochs=1", "--set", "ground_steps=10", "--set", "bpr_epochs=1",
                           "--set", "prefix_codes=8", "--set", "d_model=16")
    assert code == 0 and model.exists() and "with item text" in out
    code, out, _ = cli("recsys", "recommend", "--model", str(model), "--inter", str(inter), "--user", "u3",
                           "--k", "5")
    assert code == 0
    rows = out.strip().splitlines()
    assert len(rows) == 5
    history = {f"p{i}" for i in world.sequences[3]}
    assert all(row.split()[1] not in history for row in rows)  # history items are never recommended


def test_bad_inputs_are_one_line_errors(tmp_path, cli):
    inter, _, _ = write_atomic(tmp_path, n_users=5)
    code, _, err = cli("recsys", "train", "--inter", str(inter))
    assert code == 2 and "need at least 64" in err and len(err.strip().splitlines()) == 1
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not a model")
    code, _, err = cli("recsys", "recommend", "--model", str(fake), "--inter", str(inter), "--user", "u1")
    assert code == 2 and err.startswith("nanorepro: error:")
