"""The practitioner's commands: `lm train` on your own text and `lm generate` with MTP drafts."""

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.progress import ProgressBoard
from nanorepro.lm import tools
from nanorepro.lm.data import text_corpus
from nanorepro.lm.model import EOS
from nanorepro.lm.train import TrainConfig

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40  # 1,960 bytes, very predictable



def _tcfg(steps=40):
    return TrainConfig(steps=steps, batch_size=4, seq_len=32, lr=3e-3, eval_every=10, eval_windows=4,
                       checkpoint_every=10)


def test_text_corpus_holds_out_the_tail_of_few_files_and_every_20th_of_many(tmp_path):
    one = tmp_path / "one.txt"
    one.write_bytes(bytes(range(99)))
    corpus = text_corpus(one)
    stream = np.append(np.arange(99), EOS)  # 100 tokens: 95 train, the last 5 held out
    assert corpus.train.tolist() == stream[:95].tolist() and corpus.val.tolist() == stream[95:].tolist()
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"f{i:02d}.md").write_bytes(bytes([65 + i % 26]) * 3)
    (folder / "skip.bin").write_bytes(b"zzz")
    corpus = text_corpus(folder, "*.md")
    assert corpus.files == 40 and len(corpus.val) == 2 * 4 and len(corpus.train) == 38 * 4  # f19, f39 held out
    assert corpus.val[:3].tolist() == [65 + 19] * 3
    with pytest.raises(UserError, match="no files matching"):
        text_corpus(folder, "*.txt")
    with pytest.raises(UserError, match="does not exist"):
        text_corpus(tmp_path / "missing")


def test_train_then_generate_learns_the_text_and_speculative_equals_plain(tmp_path, cli):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT)
    model = tmp_path / "lm.safetensors"
    code, out, err = cli(*["lm", "train", "--data", str(data), "--out", str(model), "--size", "debug",
                           "--steps", "80", "--batch-size", "8", "--seq-len", "32", "--device", "cpu"])
    assert code == 0, err
    assert "held-out bits per byte" in out and not (tmp_path / "lm.safetensors.ckpt.safetensors").exists()
    curve = load_checkpoint(model)["curve"]
    assert curve[-1]["val_bpb"] < 0.5 * curve[0]["val_bpb"]  # the repeated sentences are learned
    spec = tools.generate(model, "the cat sat ", 40, speculative=True)
    plain = tools.generate(model, "the cat sat ", 40, speculative=False)
    assert spec["text"] == plain["text"] and spec["tau"] >= 1.0
    code, out, _ = cli(*["lm", "generate", "--model", str(model), "--prompt", "the cat sat ", "--tokens", "40",
                         "--device", "cpu"])
    assert code == 0 and out.startswith("the cat sat " + plain["text"])


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT)
    with ProgressBoard(enabled=False) as board:
        tools.train_lm(data, tmp_path / "straight.safetensors", "debug", _tcfg(), 0, board)
    calls = []

    def save_then_crash(path, state):
        save_checkpoint(path, state)
        if "training" in state:
            calls.append(state["training"]["step"])
            if calls == [10, 20]:
                raise KeyboardInterrupt

    monkeypatch.setattr(tools, "save_checkpoint", save_then_crash)
    out = tmp_path / "resumed.safetensors"
    with ProgressBoard(enabled=False) as board:
        with pytest.raises(KeyboardInterrupt):
            tools.train_lm(data, out, "debug", _tcfg(), 0, board)
        assert (tmp_path / "resumed.safetensors.ckpt.safetensors").exists() and not out.exists()
        tools.train_lm(data, out, "debug", _tcfg(), 0, board)
    assert calls == [10, 20, 30]  # the second run started at step 20
    straight, resumed = load_checkpoint(tmp_path / "straight.safetensors"), load_checkpoint(out)
    for name, value in straight["weights"].items():
        assert torch.equal(value, resumed["weights"][name]), name


def test_nvfp4_model_round_trips_and_decodes_speculatively_as_greedy(tmp_path):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT)
    with ProgressBoard(enabled=False) as board:
        tools.train_lm(data, tmp_path / "fp4.safetensors", "debug", _tcfg(20), 0, board, nvfp4=True)
    model, state = tools.load_model(tmp_path / "fp4.safetensors")
    assert state["recipe"]["activation_scale"] == "tensor"  # trained with the recipe's per-tensor scale
    assert any(getattr(m, "recipe", None) is not None for m in model.modules())
    spec = tools.generate(tmp_path / "fp4.safetensors", "the dog ", 24, speculative=True)
    plain = tools.generate(tmp_path / "fp4.safetensors", "the dog ", 24, speculative=False)
    assert spec["text"] == plain["text"]


@pytest.mark.parametrize("args, message", [
    (["--size", "huge"], "unknown size 'huge'"),
    (["--seq-len", "5000"], "need at least seq_len + 2"),
    (["--steps", "0"], "--steps, --batch-size and --seq-len must be >= 1"),
])
def test_train_refuses_bad_input_with_one_line(tmp_path, cli, args, message):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT)
    code, _, err = cli(*["lm", "train", "--data", str(data), "--out", str(tmp_path / "m.safetensors"),
                         "--device", "cpu", *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_generate_refuses_a_foreign_file_and_an_empty_prompt(tmp_path, cli):
    foreign = tmp_path / "x.safetensors"
    save_checkpoint(foreign, {"format": "nanorepro.recsys.model/1"})
    code, _, err = cli(*["lm", "generate", "--model", str(foreign), "--prompt", "hi"])
    assert code == 2 and "not a nanorepro LM" in err
    code, _, err = cli(*["lm", "generate", "--model", str(foreign), "--prompt", ""])
    assert code == 2 and "the prompt is empty" in err


def test_sampling_is_reproducible_under_a_seed_and_refuses_a_negative_temperature(tmp_path, cli):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT)
    with ProgressBoard(enabled=False) as board:
        tools.train_lm(data, tmp_path / "lm.safetensors", "debug", _tcfg(10), 0, board)
    runs = [tools.generate(tmp_path / "lm.safetensors", "the ", 30, temperature=1.0, seed=s)["text"] for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]  # 30 bytes from a barely trained model: seeds differ
    code, _, err = cli("lm", "generate", "--model", tmp_path / "lm.safetensors", "--prompt", "a", "--temperature", "-1")
    assert code == 2 and "--temperature must be >= 0" in err
