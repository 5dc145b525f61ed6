"""Our weights in Hugging Face's NemotronH give our logits (skipped without transformers)."""

import pytest
import torch

from nanorepro.lm.model import HybridConfig, HybridLM, hf_state_dict

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("pattern", ["M", "*", "E", "-", "MEMEM*EMEM*E"])
@pytest.mark.parametrize("moe", ["latent", "standard"])
def test_logits_match_the_reference_implementation(pattern, moe):
    if not hasattr(transformers, "NemotronHForCausalLM"):
        pytest.skip("this transformers has no NemotronH")
    torch.manual_seed(0)
    cfg = HybridConfig.named("debug", pattern=pattern, moe=moe, mtp_depths=0)
    ours = HybridLM(cfg).eval()
    ref = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**cfg.to_hf())).eval()
    missing, unexpected = ref.load_state_dict(hf_state_dict(ours), strict=False)
    assert not missing and not unexpected
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        assert torch.allclose(ours(ids)[0], ref(ids, use_cache=False).logits, atol=1e-5, rtol=0)
