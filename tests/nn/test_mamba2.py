import pytest
import torch

from nanorepro.nn.mamba2 import Mamba2Mixer, segsum, ssd_recurrent, ssd_scan


def random_inputs(b=2, T=37, H=4, P=3, G=2, N=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, T, H, P, generator=g, dtype=dtype)
    dt = torch.rand(b, T, H, generator=g, dtype=dtype) * 0.5
    A = -torch.rand(H, generator=g, dtype=dtype) * 2 - 0.1
    B = torch.randn(b, T, G, N, generator=g, dtype=dtype)
    C = torch.randn(b, T, G, N, generator=g, dtype=dtype)
    return x, dt, A, B, C


def test_segsum_by_hand():
    s = segsum(torch.tensor([1.0, 2.0, 3.0]))
    assert s[2, 0].item() == 5.0 and s[2, 1].item() == 3.0 and s[1, 1].item() == 0.0
    assert s[0, 1].item() == float("-inf")


@pytest.mark.parametrize("T, chunk", [(37, 8), (32, 8), (5, 16), (1, 4)])
def test_chunked_scan_equals_recurrence_fp64(T, chunk):
    x, dt, A, B, C = random_inputs(T=T)
    init = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    y_ref, s_ref = ssd_recurrent(x, dt, A, B, C, init)
    y, s = ssd_scan(x, dt, A, B, C, chunk, init)
    assert (y - y_ref).abs().max() <= 1e-10 and (s - s_ref).abs().max() <= 1e-10


def test_chunked_scan_fp32_and_state_handoff():
    x, dt, A, B, C = random_inputs(T=40, dtype=torch.float32)
    y_ref, s_ref = ssd_recurrent(x, dt, A, B, C)
    y, s = ssd_scan(x, dt, A, B, C, 16)
    assert (y - y_ref).abs().max() <= 1e-4
    # Scanning the halves with the state handed over equals one scan (prefill -> decode).
    y1, s1 = ssd_scan(x[:, :17], dt[:, :17], A, B[:, :17], C[:, :17], 16)
    y2, s2 = ssd_scan(x[:, 17:], dt[:, 17:], A, B[:, 17:], C[:, 17:], 16, s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-4) and torch.allclose(s2, s, atol=1e-4)


def test_mixer_cached_steps_equal_full_forward():
    torch.manual_seed(0)
    mixer = Mamba2Mixer(d_model=16, heads=4, head_dim=4, state=6, groups=2, conv_kernel=4, chunk=8).double()
    h = torch.randn(2, 13, 16, dtype=torch.float64)
    full = mixer(h)
    cache = mixer.empty_cache(2, dtype=torch.float64)
    first = mixer(h[:, :6], cache)  # prefill (chunked)
    steps = [mixer(h[:, t:t + 1], cache) for t in range(6, 13)]  # then one token at a time
    assert torch.allclose(torch.cat([first, *steps], 1), full, atol=1e-10, rtol=0)


def test_mixer_rollback_to_an_accepted_prefix():
    torch.manual_seed(0)
    mixer = Mamba2Mixer(d_model=16, heads=4, head_dim=4, state=6, groups=2, conv_kernel=4, chunk=8).double()
    h = torch.randn(1, 10, 16, dtype=torch.float64)
    cache = mixer.empty_cache(1, dtype=torch.float64)
    mixer(h[:, :5], cache)
    mixer(h[:, 5:9], cache, keep_states=True)  # 4 drafted tokens
    cache.accept(2)  # only 2 accepted
    rolled = mixer(h[:, 9:10], cache)
    reference = mixer.empty_cache(1, dtype=torch.float64)
    mixer(h[:, :7], reference)
    assert torch.allclose(rolled, mixer(h[:, 9:10], reference), atol=1e-10, rtol=0)


def test_hf_parameter_names_and_init():
    mixer = Mamba2Mixer(d_model=256, heads=16, head_dim=32, state=32, groups=2, conv_kernel=4, chunk=64)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {"dt_bias": (16,), "A_log": (16,), "D": (16,), "in_proj.weight": (1168, 256),
                      "conv1d.weight": (640, 1, 4), "conv1d.bias": (640,), "norm.weight": (512,),
                      "out_proj.weight": (256, 512)}
    assert torch.allclose(mixer.A_log.exp(), torch.arange(1.0, 17.0)) and torch.all(mixer.D == 1)
    dt = torch.nn.functional.softplus(mixer.dt_bias)
    assert dt.min() >= 1e-3 - 1e-6 and dt.max() <= 0.1 + 1e-6
