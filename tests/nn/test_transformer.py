import torch

from nanorepro.nn.transformer import Block, causal_padding_mask


def test_padding_mask_by_hand():
    allowed = causal_padding_mask(torch.tensor([[True, False, False]]))
    assert allowed[0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_left_padding_does_not_change_the_real_tokens_outputs():
    torch.manual_seed(0)
    block = Block(16, 2).eval()
    x = torch.randn(1, 3, 16)
    padded = torch.cat([torch.randn(1, 2, 16), x], 1)
    allowed = causal_padding_mask(torch.tensor([[True, True, False, False, False]]))
    torch.testing.assert_close(block(padded, allowed=allowed)[:, 2:], block(x), atol=1e-6, rtol=1e-5)


def test_cached_steps_match_the_full_forward():
    torch.manual_seed(0)
    block = Block(16, 4).eval()
    x = torch.randn(2, 5, 16)
    cache: list = []
    stepped = torch.cat([block(x[:, :3], cache), block(x[:, 3:4], cache), block(x[:, 4:], cache)], 1)
    torch.testing.assert_close(stepped, block(x), atol=1e-6, rtol=1e-5)
