"""Thread choice of the user commands: the measured count, unless the user set OMP_NUM_THREADS."""

import os

import torch

from nanorepro.cli import BRAKING_THREADS, LLM_RL_THREADS
from nanorepro.common.device import default_threads


def test_default_threads_applies_the_measured_count_unless_the_user_chose_one(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    assert default_threads(2) == min(2, os.cpu_count()) == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    assert default_threads(2) == 1  # the user's choice stands


def test_each_command_group_sets_its_threads_before_its_command_runs(monkeypatch, tmp_path, cli):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for group, args, expected in (("llm-rl", ["make-data", "--out", tmp_path / "p.jsonl", "--n", "2"], LLM_RL_THREADS),
                                  ("braking", ["train", "--data", tmp_path / "missing.npz"], BRAKING_THREADS)):
        torch.set_num_threads(3 - expected if os.cpu_count() > 1 else 1)  # the other count
        cli(group, *args)  # the braking command fails on the missing file, after the group's callback
        assert torch.get_num_threads() == min(expected, os.cpu_count()), group
