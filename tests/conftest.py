import os

import pytest
import torch

# The user commands pick their measured thread count unless OMP_NUM_THREADS is set: tests use tiny
# tensors, for which one thread is fastest (tests/common tests the choice itself).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny tensors: one thread is fastest and makes timings stable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def cli(capsys):
    """Run the nanorepro CLI in-process: ``cli(*args) -> (exit code, stdout, stderr)``."""
    from nanorepro.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    return run


@pytest.fixture
def refuse():
    """``refuse(message)``: a stand-in that fails the test with ``message`` when called (work a resumed run must
    not do again)."""
    def make(message):
        def refused(*args, **kwargs):
            raise AssertionError(message)

        return refused

    return make
