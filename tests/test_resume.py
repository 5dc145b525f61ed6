"""Kill a run half-way (SIGKILL, as a crash or a closed laptop would), resume it, get the same numbers."""

import json
import os
import signal
import subprocess
import sys
import time

from nanorepro.common.checkpoint import load_checkpoint

ARGS = ["run", "dual_qdm_cliff", "--profile", "smoke", "--seed", "3",
        "--set", "q_steps=1500", "--set", "checkpoint_every=100", "--set", "ail_steps=20"]


def nanorepro(results, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nanorepro", *ARGS, "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    proc = nanorepro(interrupted)
    deadline = time.monotonic() + 120
    checkpoints = []
    while not checkpoints and time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list(interrupted.glob("dual_qdm_cliff/*/seed3.ckpt.safetensors"))
        time.sleep(0.02)
    assert checkpoints, "no checkpoint appeared"
    time.sleep(1.0)  # let it get further: finished learners plus one part-way
    assert proc.poll() is None, "the run finished before it could be killed; raise q_steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [ckpt] = checkpoints
    state = load_checkpoint(ckpt)["state"]
    assert state["done"], "expected at least one finished learner in the checkpoint"
    assert not list(interrupted.glob("dual_qdm_cliff/*/seed3.json")), "a killed run must leave no result"

    resumed = nanorepro(interrupted)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming from" in err
    baseline = nanorepro(clean)
    baseline.communicate(timeout=300)
    assert baseline.returncode == 0

    [a] = interrupted.glob("dual_qdm_cliff/*/seed3.json")
    [b] = clean.glob("dual_qdm_cliff/*/seed3.json")
    result_a, result_b = json.loads(a.read_text()), json.loads(b.read_text())
    assert result_a["resumed"] is True and result_b["resumed"] is False
    assert result_a["metrics"] == result_b["metrics"]
    assert not ckpt.exists()
