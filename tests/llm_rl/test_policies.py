"""The policy protocol: TinyGPT, a Hugging Face causal LM and the hybrid LM sample and score alike."""

import pytest
import torch

from nanorepro.llm_rl.policy import (
    HybridPolicy,
    TinyGPT,
    TinyGPTConfig,
    completion_logits,
    sample,
    token_logprobs,
)


def check_protocol(policy, vocab):
    prompts = torch.randint(2, vocab, (3, 6))
    g = torch.Generator().manual_seed(0)
    greedy = sample(policy, prompts, 5, g, temperature=0)
    # cached greedy decoding equals argmax over full forwards
    ids = prompts
    for t in range(5):
        nxt = policy(ids)[:, -1].argmax(-1)
        done_before = (greedy[:, :t] == 1).any(1) if t else torch.zeros(3, dtype=torch.bool)
        assert torch.equal(torch.where(done_before, greedy[:, t], nxt), greedy[:, t])
        ids = torch.cat([ids, nxt[:, None]], 1)
    logits = completion_logits(policy, prompts, greedy)
    assert logits.shape == (3, 5, vocab) and token_logprobs(logits, greedy).shape == (3, 5)


def test_tinygpt_protocol():
    torch.manual_seed(0)
    check_protocol(TinyGPT(TinyGPTConfig(vocab_size=20, d_model=16, layers=2, heads=2, max_len=32)).eval(), 20)


def test_hybrid_lm_protocol():
    from nanorepro.lm.model import HybridConfig, HybridLM

    torch.manual_seed(0)
    model = HybridLM(HybridConfig.named("debug", vocab_size=20, mtp_depths=0)).double().eval()
    check_protocol(HybridPolicy(model), 20)


def test_hugging_face_protocol():
    transformers = pytest.importorskip("transformers")
    from nanorepro.llm_rl.policy import HFPolicy

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    check_protocol(HFPolicy(transformers.LlamaForCausalLM(cfg).eval()), 20)
