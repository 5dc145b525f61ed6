import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny tensors: one thread is fastest and makes timings stable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
