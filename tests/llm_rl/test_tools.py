"""The practitioner's commands: `llm-rl sft | train | evaluate` on a user's problems file."""

import json

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.progress import ProgressBoard
from nanorepro.llm_rl import tools
from nanorepro.llm_rl.policy import ByteTokenizer
from nanorepro.llm_rl.tasks import Problem


def _problems_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sums(path, n_short=40, n_long=20):
    """Sums with thinking, prompts of two lengths ("3+4=" and "13+4="), so batches must group by length."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_short + n_long):
        a, b = int(rng.integers(10 if i >= n_short else 1, 20 if i >= n_short else 10)), int(rng.integers(1, 10))
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b), "completion": f"<{a},{b}>{a + b}"})
    return _problems_file(path, rows)


SMALL = tools.SFTConfig(steps=60, batch=32, lr=3e-3, d_model=32, layers=1, heads=2, checkpoint_every=20)


@pytest.mark.parametrize("completion, reward, malformed", [
    ("<46>102.", 1.0, False), ("102.", 1.0, False), (" 102. ", 1.0, False), ("<46>103.", 0.0, False),
    ("<>102.", 1.0, False), ("<46102.", 0.0, True), ("", 0.0, True), ("102", 0.0, False),
])
def test_the_verifier_reads_the_answer_after_the_thinking(completion, reward, malformed):
    assert tools.answer_reward(completion, Problem("12+34+56=", "", "102.", {})) == (reward, malformed)


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2: not JSON"),
    ('{"prompt": "1+1="}', 'line 2: need an object with "prompt" and "answer"'),
    ('{"prompt": "1+1=", "answer": "2", "hint": "x"}', "line 2: unknown field(s) hint"),
    ('{"prompt": "1+1=", "answer": 2}', "line 2: prompt, answer and completion must be strings"),
    ('{"prompt": "", "answer": "2"}', "line 2: empty prompt or answer"),
])
def test_a_malformed_problems_file_is_refused_naming_the_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "1+2=", "answer": "3"}\n' + line + "\n")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tools.load_problems(path)


def test_batches_share_a_prompt_length_drawn_in_proportion(tmp_path):
    problems = tools.load_problems(_sums(tmp_path / "p.jsonl", 40, 20))
    draw = tools.by_prompt_length(problems, ByteTokenizer())
    rng = np.random.default_rng(0)
    lengths = [{len(p.prompt) for p in draw(rng, 8)} for _ in range(600)]
    assert all(len(s) == 1 for s in lengths)
    assert abs(np.mean([s == {4} for s in lengths]) - 40 / 60) < 0.06


def test_sft_learns_the_references_then_each_method_trains_and_evaluates(tmp_path, cli):
    data = _sums(tmp_path / "sums.jsonl")
    sft = tmp_path / "sft.safetensors"
    code, out, err = cli(*["llm-rl", "sft", "--data", str(data), "--out", str(sft), "--steps", "150",
                           "--batch", "32", "--lr", "3e-3", "--d-model", "32", "--layers", "2"])
    assert code == 0, err
    assert "100% of the references pass the verifier" in out and (tmp_path / "sft.safetensors.curve.png").exists()
    history = load_checkpoint(sft)["history"]
    assert history[0]["greedy_accuracy_on_data"] > 0.3  # it has learned some sums
    for method in ("dr_grpo", "reval", "start"):
        out_path = tmp_path / f"{method}.safetensors"
        code, out, err = cli(*["llm-rl", "train", "--policy", str(sft), "--data", str(data), "--eval", str(data),
                               "--method", method, "--iterations", "4", "--prompts", "4", "--group", "4",
                               "--eval-every", "2", "--out", str(out_path)])
        assert code == 0, err
        assert "after 64 samples" in out and not (tmp_path / f"{method}.safetensors.ckpt.safetensors").exists()
        state = load_checkpoint(out_path)
        curve = state["history"][-1]["curve"]
        assert [p["samples"] for p in curve] == [0, 32, 64] and [h["stage"] for h in state["history"]] == ["sft",
                                                                                                          method]
    code, out, err = cli("llm-rl", "evaluate", "--policy", tmp_path / "start.safetensors", "--data", data,
                         "--show", "2", "--predictions", tmp_path / "pred.jsonl")
    assert code == 0, err
    assert "60 problems (sft -> start): greedy accuracy" in out and len(out.strip().splitlines()) == 3
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    problems = tools.load_problems(data)
    assert [r["prompt"] for r in rows] == [p.prompt for p in problems]  # the file's order, across lengths
    accuracy = float(out.split("greedy accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(np.mean([r["reward"] for r in rows]), abs=5e-4)
    model, tok, state = tools.load_policy(tmp_path / "start.safetensors")
    one = tools.greedy_completions(model, tok, problems[-1:], state["max_new"])
    assert one == [rows[-1]["completion"]]  # a batch of one decodes the same


def _crash_after(monkeypatch, saves: int):
    """Make tools.save_checkpoint raise KeyboardInterrupt after writing its ``saves``-th checkpoint."""
    count = []

    def save_then_crash(path, state):
        save_checkpoint(path, state)
        if str(path).endswith(".ckpt.safetensors"):
            count.append(1)
            if len(count) == saves:
                raise KeyboardInterrupt

    monkeypatch.setattr(tools, "save_checkpoint", save_then_crash)
    return count


def test_interrupted_sft_and_rl_resume_to_the_same_weights(tmp_path, monkeypatch):
    data = _sums(tmp_path / "sums.jsonl")
    rl_cfg = tools.RLToolConfig(method="start", iterations=6, prompts_per_iter=4, group=4, eval_every=2)
    with ProgressBoard(enabled=False) as board:
        tools.sft(data, tmp_path / "sft.safetensors", SMALL, 0, board)
        tools.train(tmp_path / "sft.safetensors", data, tmp_path / "rl.safetensors", rl_cfg, 0, board)
        reval = tools.RLToolConfig(method="reval", iterations=4, prompts_per_iter=4, group=4, eval_every=1)
        tools.train(tmp_path / "sft.safetensors", data, tmp_path / "reval.safetensors", reval, 0, board)
    for name, saves, cfg in (("sft", 2, SMALL), ("rl", 3, rl_cfg), ("reval", 2, reval)):
        _crash_after(monkeypatch, saves)
        out = tmp_path / f"{name}-resumed.safetensors"
        with ProgressBoard(enabled=False) as board:
            run = (lambda: tools.sft(data, out, cfg, 0, board)) if name == "sft" else \
                (lambda: tools.train(tmp_path / "sft.safetensors", data, out, cfg, 0, board))  # noqa: B023
            with pytest.raises(KeyboardInterrupt):
                run()
            assert out.with_name(out.name + ".ckpt.safetensors").exists() and not out.exists()
            monkeypatch.setattr(tools, "save_checkpoint", save_checkpoint)
            run()
        straight, resumed = load_checkpoint(tmp_path / f"{name}.safetensors"), load_checkpoint(out)
        for key, value in straight["weights"].items():
            assert torch.equal(value, resumed["weights"][key]), (name, key)
        assert straight["history"][-1].get("curve") == resumed["history"][-1].get("curve")


@pytest.mark.parametrize("args, message", [
    (["--method", "ppo"], "unknown method 'ppo'"),
    (["--group", "1"], "group-relative methods need --group >= 2"),
    (["--start-phase1", "1.5"], "0 < --start-phase1 < 1"),
    (["--method", "start", "--iterations", "1"], "--method start needs --iterations >= 2"),
])
def test_train_refuses_bad_settings_with_one_line(tmp_path, cli, args, message):
    data = _sums(tmp_path / "sums.jsonl")
    with ProgressBoard(enabled=False) as board:
        tools.sft(data, tmp_path / "sft.safetensors", tools.SFTConfig(steps=1, d_model=16, layers=1, heads=2), 0,
                  board)
    code, _, err = cli(*["llm-rl", "train", "--policy", str(tmp_path / "sft.safetensors"), "--data", str(data),
                         "--out", str(tmp_path / "rl.safetensors"), *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rl.safetensors").exists()


def test_start_without_thinking_unknown_characters_and_foreign_files_are_refused(tmp_path, cli):
    plain = _problems_file(tmp_path / "plain.jsonl", [{"prompt": "1+2=", "answer": "3"}])
    with ProgressBoard(enabled=False) as board:
        tools.sft(plain, tmp_path / "sft.safetensors", tools.SFTConfig(steps=1, d_model=16, layers=1, heads=2), 0,
                  board)
    base = ["llm-rl", "train", "--policy", str(tmp_path / "sft.safetensors"), "--out", str(tmp_path / "x")]
    code, _, err = cli(*[*base, "--data", str(plain), "--method", "start"])
    assert code == 2 and "no reference completion" in err
    letters = _problems_file(tmp_path / "letters.jsonl", [{"prompt": "a+b=", "answer": "ab"}])
    code, _, err = cli(*[*base, "--data", str(letters)])
    assert code == 2 and "letters.jsonl line 1: character(s) 'ab'" in err
    code, _, err = cli(*["llm-rl", "evaluate", "--policy", str(plain), "--data", str(plain)])
    assert code == 2 and "cannot read checkpoint" in err


def test_thinking_masks_count_tokens_not_characters():
    from nanorepro.llm_rl.loop import thinking_mask
    from nanorepro.llm_rl.policy import CharTokenizer

    batch = {"mask": torch.ones(2, 6), "texts": ["<é>1", "1"]}
    thinking = thinking_mask(batch, ByteTokenizer(), "thinking")  # é is two bytes
    assert thinking.tolist() == [[1, 1, 1, 1, 0, 0], [0] * 6]
    assert thinking_mask(batch, CharTokenizer("<é>1"), "thinking")[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert (thinking_mask(batch, ByteTokenizer(), "response") == 1 - thinking).all()
    assert ByteTokenizer().decode(ByteTokenizer().encode("<é>1") + [ByteTokenizer.EOS, 65]) == "<é>1"


def test_a_hybrid_lm_from_lm_train_is_fine_tuned_trained_and_still_generates(tmp_path, cli):
    text = tmp_path / "text.txt"
    text.write_text("1+2=3. 4+5=9. 2+2=4. " * 60)
    lm = tmp_path / "lm.safetensors"
    assert cli("lm", "train", "--data", text, "--out", lm, "--size", "debug", "--steps", "4", "--seq-len", "32",
               "--device", "cpu")[0] == 0
    data = _sums(tmp_path / "sums.jsonl", 12, 6)
    code, out, err = cli("llm-rl", "sft", "--init", lm, "--data", data, "--out", tmp_path / "sft.safetensors",
                         "--steps", "30", "--batch", "16", "--lr", "3e-3")
    assert code == 0, err
    assert "bytes as tokens" in out
    state = load_checkpoint(tmp_path / "sft.safetensors")
    assert state["format"] == "nanorepro.lm.model/1" and state["history"][-1]["final_loss"] < 4.0  # ln 260 = 5.6
    code, out, err = cli("llm-rl", "train", "--policy", tmp_path / "sft.safetensors", "--data", data, "--method",
                         "start", "--iterations", "2", "--prompts", "2", "--group", "2", "--eval-every", "1",
                         "--out", tmp_path / "rl.safetensors")
    assert code == 0, err
    assert [h["stage"] for h in load_checkpoint(tmp_path / "rl.safetensors")["history"]] == ["sft", "start"]
    code, out, err = cli("lm", "generate", "--model", tmp_path / "rl.safetensors", "--prompt", "3+4=", "--tokens",
                         "6", "--device", "cpu")
    assert code == 0 and out.startswith("3+4="), err


def test_prompts_of_equal_characters_but_unequal_bytes_are_batched_apart():
    from nanorepro.llm_rl.loop import accuracy
    from nanorepro.llm_rl.policy import HybridPolicy
    from nanorepro.lm.model import HybridConfig, HybridLM

    torch.manual_seed(0)
    policy = HybridPolicy(HybridLM(HybridConfig.named("debug", mtp_depths=0)))
    problems = [Problem("é=", "", "1", {}), Problem("a=", "", "1", {}), Problem("b=", "", "1", {})]
    draw = tools.by_prompt_length(problems, ByteTokenizer())
    assert {len(draw(np.random.default_rng(i), 4)[0].prompt.encode()) for i in range(40)} == {2, 3}
    acc, malformed = accuracy(policy, ByteTokenizer(), problems, tools.answer_reward, 2, 3, torch.Generator())
    assert 0 <= acc <= 1 and 0 <= malformed <= 1


@pytest.fixture
def hf_model(tmp_path):
    """A tiny Llama and a byte-level BPE tokenizer trained here (``llm-rl make-hf-model``), as a local model
    directory: no download."""
    pytest.importorskip("transformers")
    path = tmp_path / "hf-model"
    tools.write_tiny_hf_model(_sums(tmp_path / "corpus.jsonl"), path, vocab=300, d_model=32, layers=2, heads=2)
    return path


def test_a_hugging_face_model_directory_is_fine_tuned_trained_and_evaluated_as_a_directory(tmp_path, cli, hf_model):
    import transformers

    data = _sums(tmp_path / "sums.jsonl", 12, 6)
    sft_dir, rl_dir = tmp_path / "sft-model", tmp_path / "rl-model"
    code, out, err = cli("llm-rl", "sft", "--init", hf_model, "--data", data, "--out", sft_dir, "--steps", "40",
                         "--batch", "16", "--lr", "3e-3")
    assert code == 0, err
    assert "the model's tokenizer" in out
    record = json.loads((sft_dir / tools.HF_RECORD).read_text())
    assert record["history"][-1]["final_loss"] < 3.0   # from ln(vocab) = 5.7 at initialisation
    code, out, err = cli("llm-rl", "train", "--policy", sft_dir, "--data", data, "--method", "start", "--iterations",
                         "2", "--prompts", "2", "--group", "2", "--eval-every", "1", "--out", rl_dir)
    assert code == 0, err
    assert [h["stage"] for h in json.loads((rl_dir / tools.HF_RECORD).read_text())["history"]] == ["sft", "start"]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.ckpt.safetensors"))
    tuned = transformers.AutoModelForCausalLM.from_pretrained(rl_dir, local_files_only=True)   # a plain HF model
    base = transformers.AutoModelForCausalLM.from_pretrained(hf_model, local_files_only=True)
    assert any(not torch.equal(a, b) for a, b in zip(base.state_dict().values(), tuned.state_dict().values(),
                                                     strict=True))
    code, out, err = cli("llm-rl", "evaluate", "--policy", rl_dir, "--data", data, "--samples", "1")
    assert code == 0 and "greedy" in out, err


def test_rl_on_a_hugging_face_model_resumes_to_the_same_weights(tmp_path, monkeypatch, hf_model):
    data = _sums(tmp_path / "sums.jsonl", 12, 6)
    cfg = tools.RLToolConfig(method="dr_grpo", iterations=4, prompts_per_iter=2, group=2, eval_every=1)
    with ProgressBoard(enabled=False) as board:
        tools.train(hf_model, data, tmp_path / "straight", cfg, 0, board)
        _crash_after(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            tools.train(hf_model, data, tmp_path / "resumed", cfg, 0, board)
        monkeypatch.setattr(tools, "save_checkpoint", save_checkpoint)
        tools.train(hf_model, data, tmp_path / "resumed", cfg, 0, board)
    straight, resumed = (tools.load_policy(tmp_path / name)[0].state_dict() for name in ("straight", "resumed"))
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_make_hf_model_writes_a_directory_that_transformers_and_the_tools_read(tmp_path, cli):
    transformers = pytest.importorskip("transformers")
    data = _sums(tmp_path / "sums.jsonl")
    code, out, err = cli("llm-rl", "make-hf-model", "--data", data, "--out", tmp_path / "m", "--vocab", 300,
                         "--d-model", 32, "--layers", 1, "--heads", 2)
    assert code == 0 and "Llama with" in out, err
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    assert tokenizer.decode(tokenizer.encode("13+4=<13,4>17")) == "13+4=<13,4>17"   # byte-level: round trip
    model, tok, state = tools.load_policy(tmp_path / "m")
    assert tok.decode(tok.encode("3+4=7") + [tok.EOS] + tok.encode("junk")) == "3+4=7" and state["history"] == []
    code, _, err = cli("llm-rl", "make-hf-model", "--data", data, "--out", tmp_path / "n", "--d-model", 30,
                       "--heads", 4)
    assert code == 2 and "multiple of --heads" in err


def test_hugging_face_directories_that_cannot_be_read_or_written_are_one_line_errors(tmp_path, cli, hf_model):
    data = _sums(tmp_path / "sums.jsonl", 12, 6)
    (tmp_path / "empty").mkdir()
    code, _, err = cli("llm-rl", "evaluate", "--policy", tmp_path / "empty", "--data", data)
    assert code == 2 and "without config.json" in err
    (tmp_path / "taken").write_text("a file")
    code, _, err = cli("llm-rl", "train", "--policy", hf_model, "--data", data, "--iterations", "1", "--prompts", "2",
                       "--group", "2", "--out", tmp_path / "taken")
    assert code == 2 and "is a file" in err and (tmp_path / "taken").read_text() == "a file"
    assert not (tmp_path / "taken.ckpt.safetensors").exists()   # refused before any training
