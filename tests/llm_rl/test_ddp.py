import json
import os
import subprocess
import sys
from pathlib import Path


def test_trainers_run_under_torchrun_with_two_processes(tmp_path):
    out = tmp_path / "ddp.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                           "29611", str(Path(__file__).with_name("ddp_worker.py")), str(out)], capture_output=True,
                          text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for method in ("grpo", "reval"):
        assert report[method]["samples"] == 3 * 2 * 4 * 2  # iterations x prompts x group x processes
        assert report[method]["max_param_diff"] == 0.0  # the replicas stay identical
