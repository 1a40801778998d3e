from charlm.checkpoint import load_model
from charlm.config import SampleConfig
from charlm.sampling import sample_text


def test_tiny_model_generates_from_prefix(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    out = sample_text(model, vocab, "分开", SampleConfig(length=20, seed=1))
    assert out[0].startswith("分开") and len(out[0]) == 22
