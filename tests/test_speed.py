"""The fast paths compute what the plain ones do: the CUDA-graph step protocol, the one-hot LSTM, bf16, generation.

Everything here runs on the CPU.  What needs a GPU (a real captured graph against the
eager step, bf16 training on the GPU) is checked by bench/gpu_checks.py, run by bench/gpu.sh.
No timing is asserted.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from charlm import numpy_sampling, sampling
from charlm import step as step_mod
from charlm import train as train_mod
from charlm.config import ModelConfig, SampleConfig, TrainConfig
from charlm.data import batches, load_corpus
from charlm.errors import CharlmError
from charlm.model import CharLM, detach
from charlm.sampling import draw, generate, sample_text
from charlm.step import TrainStep, check_speed_flags, one_hot_forward
from charlm.train import Trainer, build_optimizer, lr_factor
from charlm.vocab import Vocab

from .conftest import tiny_train_config, train_tiny

CPU = torch.device("cpu")


# --- flags ----------------------------------------------------------------------------


def test_precision_and_cuda_graph_flags_are_validated(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp64")
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA GPU"):
        TrainConfig(cuda_graph=True, device="cpu")
    with pytest.raises(CharlmError, match="--cuda-graph needs a CUDA GPU"):
        check_speed_flags(TrainConfig(cuda_graph=True, device="auto"), CPU)
    with pytest.raises(CharlmError, match="--cuda-graph is for one process"):
        check_speed_flags(TrainConfig(cuda_graph=True), torch.device("cuda"), world_size=2)
    for bf16_here in (True, False):  # the error offers bf16 only where this CPU could run it
        monkeypatch.setattr(step_mod, "cpu_has_bf16", lambda: bf16_here)
        with pytest.raises(CharlmError, match="fp16 needs a CUDA GPU.*on cpu use " + ("bf16 or fp32" if bf16_here else r"fp32 \(this CPU lacks")):
            check_speed_flags(TrainConfig(precision="fp16"), CPU)
    monkeypatch.undo()
    with pytest.raises(CharlmError, match="do not go together"):
        check_speed_flags(TrainConfig(precision="fp16", cuda_graph=True), torch.device("cuda"))
    if step_mod.cpu_has_bf16():
        check_speed_flags(TrainConfig(precision="bf16"), CPU)  # bf16 autocast is allowed on a CPU with bf16 units
    else:
        with pytest.raises(CharlmError, match="bf16 on the CPU needs bfloat16 instructions"):
            check_speed_flags(TrainConfig(precision="bf16"), CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
def test_cuda_graph_on_a_cpu_machine_is_a_clear_error(tmp_path):
    with pytest.raises(CharlmError, match="--cuda-graph needs a CUDA GPU, but this run is on cpu"):
        train_tiny(tmp_path, epochs=1, device="auto", cuda_graph=True)


def test_cli_flags_are_the_config_fields(tmp_path):
    from charlm.cli import build_parser

    args = build_parser().parse_args(["train", "--precision", "bf16", "--cuda-graph"])
    assert args.precision == "bf16" and args.cuda_graph is True


# --- the training step ----------------------------------------------------------------


def _setup(tmp_path, model_kw=None, **kw):
    cfg = tiny_train_config(tmp_path, **kw)
    corpus = load_corpus(cfg)
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, **(model_kw or {})))
    return cfg, corpus, model


def _reference_step(model, params, optimizer, cfg, x, y, state):
    """The training step as the trainer wrote it before the fast paths, kept here as the reference."""
    logits, state = model(x, state)
    loss = F.cross_entropy(logits.reshape(-1, model.cfg.vocab_size), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
    optimizer.step()
    return loss.detach(), detach(state)


def _cpu_fused_adam(opt=torch.optim.Adam) -> bool:
    try:
        opt([torch.nn.Parameter(torch.zeros(1))], lr=0.1, fused=True)
        return True
    except (RuntimeError, TypeError):  # torch < 2.4: fused kernels on CUDA only (< 2.3: SGD has none)
        return False


@pytest.mark.parametrize("optimizer,model_kw", [("adam", {}), ("adamw", {}), ("sgd", {}), ("adam", {"copy_window": 16})])
def test_graph_step_protocol_equals_the_plain_step(tmp_path, optimizer, model_kw):
    """The body captured in the CUDA graph, run on static buffers on the CPU, matches the plain step step by step.

    Across the schedule (the rate comes from a tensor the step refreshes), the carried
    state (written back into the buffers it is read from), an epoch boundary (state None)
    and the eager warm-up steps before capture.
    """
    if not _cpu_fused_adam(torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam):
        pytest.skip(f"a capturable Adam, or SGD whose rate a graph can refresh, on the CPU needs PyTorch's fused CPU "
                    f"kernels (torch >= 2.4), not {torch.__version__}'s")
    cfg, corpus, model = _setup(tmp_path, model_kw, optimizer=optimizer, schedule="cosine", lr=1e-2, min_lr=1e-4, momentum=0.9,
                                weight_decay=0.01, grad_clip=0.5)
    cfg = dataclasses.replace(cfg, cuda_graph=False)
    ref_model = copy.deepcopy(model)
    ids = corpus.train_ids

    def make(m):
        params = [p for p in m.parameters() if p.requires_grad]
        opt = build_optimizer(params, dataclasses.replace(cfg, cuda_graph=True, device="auto"), CPU)  # capturable, as for the graph
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, 40))
        return params, opt, sched

    params, opt, sched = make(model)
    ref_params, ref_opt, ref_sched = make(ref_model)
    graph_step = TrainStep(model, model, params, opt, cfg, CPU, graph=True)
    state = ref_state = None
    n = 0
    for epoch in range(2):
        state = ref_state = None
        for x, y in batches(ids, cfg.batch_size, cfg.num_steps, "consecutive", epoch=epoch):
            loss, state = graph_step(x, y, state)
            ref_loss, ref_state = _reference_step(ref_model, ref_params, ref_opt, cfg, x, y, ref_state)
            sched.step()
            ref_sched.step()
            assert float(loss) == pytest.approx(float(ref_loss), rel=1e-6, abs=1e-7), f"step {n}"
            for a, b in zip(state, ref_state):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            n += 1
    assert graph_step.graph is not None and n > step_mod.GRAPH_WARMUP + 5
    assert isinstance(opt.param_groups[0]["lr"], float)  # checkpoints keep a float
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_one_hot_fast_path_equals_the_model(tmp_path):
    """The seed's one-hot LSTM: the looked-up recurrence gives the model's loss, gradients and state."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=40, embedding_size=0, hidden_size=24))
    fwd = one_hot_forward(model, TrainConfig(device="cpu"), CPU)
    assert fwd is not None
    x, y = torch.randint(0, 40, (5, 9)), torch.randint(0, 40, (5, 9))
    state = (torch.randn(1, 5, 24) * 0.5, torch.randn(1, 5, 24) * 0.5)

    def run(f, st):
        model.zero_grad(set_to_none=True)
        logits, new = f(x, st)
        loss = F.cross_entropy(logits.reshape(-1, 40), y.reshape(-1))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad], new

    for st in (None, state):
        ref, fast = run(model, st), run(fwd, st)
        torch.testing.assert_close(fast[0], ref[0], rtol=1e-6, atol=1e-6)
        for a, b in zip(fast[1], ref[1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(fast[2], ref[2]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_kw", [dict(embedding_size=16), dict(embedding_size=0, dropout=0.2), dict(embedding_size=0, num_layers=2),
                                      dict(embedding_size=0, embed_dropout=0.5, tie_weights=False),
                                      dict(embedding_size=0, weight_drop=0.5, tie_weights=False), dict(embedding_size=0, copy_window=8)])
def test_one_hot_fast_path_only_where_it_is_exact(model_kw):
    model = CharLM(ModelConfig(vocab_size=20, hidden_size=8, **model_kw))
    assert one_hot_forward(model, TrainConfig(device="cpu"), CPU) is None


def test_one_hot_training_matches_the_model_path(tmp_path, monkeypatch):
    """A whole epoch through the fast path ends where the model path does (to float rounding)."""
    def run(sub):
        cfg = tiny_train_config(tmp_path / sub, epochs=1, val_fraction=0.0)
        corpus = load_corpus(cfg)
        t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=0, hidden_size=32), cfg, corpus, log=lambda *_: None)
        t.fit()
        return t.metrics[-1]["train_loss"], t

    fast, trainer = run("fast")
    assert trainer._step_fn.forward is not trainer.model
    monkeypatch.setattr(step_mod, "one_hot_forward", lambda *a: None)
    slow, trainer = run("slow")
    assert trainer._step_fn.forward is trainer.model
    assert fast == pytest.approx(slow, rel=1e-4)


@pytest.mark.skipif(not step_mod.cpu_has_bf16(), reason="this CPU has no bfloat16 instructions: bf16 is refused here")
def test_bf16_on_the_cpu_reaches_fp32_perplexity(tmp_path):
    """bf16 autocast on the CPU: a short run's validation perplexity within 5% of fp32's."""
    kw = dict(epochs=3, lr=1e-2)
    fp32 = train_tiny(tmp_path / "fp32", **kw).metrics[-1]["val_ppl"]
    bf16 = train_tiny(tmp_path / "bf16", precision="bf16", **kw).metrics[-1]["val_ppl"]
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_checkpoint_keeps_precision_and_cuda_graph(tmp_path):
    from charlm import checkpoint as ckpt_io

    precision = "bf16" if step_mod.cpu_has_bf16() else "fp32"
    train_tiny(tmp_path, epochs=1, precision=precision)
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.train_config.precision == precision and c.train_config.cuda_graph is False
    assert isinstance(c.trainer["optimizer"], dict)


@pytest.mark.skipif(not hasattr(torch.amp, "GradScaler"), reason="a GradScaler on the CPU needs torch >= 2.3")
def test_fp16_gradient_scaler_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """fp16 resumes with the loss scale it had reached (GPU-only in use; the flag check is lifted to test it here)."""
    from charlm import checkpoint as ckpt_io

    monkeypatch.setattr(train_mod, "check_speed_flags", lambda *a: None)
    cfg = tiny_train_config(tmp_path, epochs=1, precision="fp16")
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32)
    first = Trainer(mcfg, cfg, corpus, log=lambda *_: None)
    scaler = first._train_step(first.train_model).scaler
    reached = {"scale": 512.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 7, "_growth_tracker": 3}
    scaler.load_state_dict(reached)
    scaler.scale(torch.ones(()))  # the state is applied lazily, on first use
    first.save("last")
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.trainer["grad_scaler"] == reached
    resumed = Trainer(c.model_config, c.train_config, corpus, resume=c, log=lambda *_: None)
    assert resumed.snapshot().trainer["grad_scaler"] == reached  # kept even before the step function exists
    again = resumed._train_step(resumed.train_model).scaler
    again.scale(torch.ones(()))
    assert again.state_dict() == reached


# --- generation -----------------------------------------------------------------------


def _inverse_cdf(probs, generator):
    """The draw written out in plain Python: one uniform number per row, found in the row's running sum."""
    import bisect
    import itertools

    u = torch.rand((probs.shape[0], 1), generator=generator, dtype=torch.float64)
    out = []
    for row, r in zip(probs.double().tolist(), u[:, 0].tolist()):
        cdf = list(itertools.accumulate(row))
        out.append(bisect.bisect_left(cdf, (1 - r) * cdf[-1]))
    return torch.tensor(out)


@torch.no_grad()
def _reference_samples(model, vocab, prefix, cfg, generator):
    """Generation as a plain loop: the module called per character, the draw written out in Python."""
    model.eval()
    n = cfg.num_samples
    logits, state = model(torch.tensor(vocab.encode(prefix)).expand(n, -1))
    logits = logits[:, -1]
    out = [prefix] * n
    for _ in range(cfg.length):
        if cfg.greedy:
            nxt = logits.argmax(-1)
        else:
            filtered = sampling.top_p_filter(sampling.top_k_filter(sampling.apply_temperature(logits.float(), cfg.temperature), cfg.top_k), cfg.top_p)
            nxt = _inverse_cdf(filtered.softmax(-1), generator)
        out = [o + vocab.itos[i] for o, i in zip(out, nxt.tolist())]
        logits, state = model(nxt[:, None], state)
        logits = logits[:, -1]
    return out


VOCAB = Vocab.build("".join(chr(0x4E00 + i) for i in range(59)) + "\n")


@pytest.mark.parametrize("model_kw", [
    dict(cell="lstm", embedding_size=16, hidden_size=32),
    dict(cell="lstm", embedding_size=0, hidden_size=32),  # one-hot: the lookup table
    dict(cell="lstm", embedding_size=16, hidden_size=24, num_layers=2),
    dict(cell="gru", embedding_size=16, hidden_size=32),
    dict(cell="rnn", embedding_size=16, hidden_size=32, num_layers=2),
    dict(cell="lstm", embedding_size=16, hidden_size=32, copy_window=12),  # the copy memory as a ring
    dict(cell="gru", embedding_size=16, hidden_size=32, num_layers=2, copy_window=12),
])
@pytest.mark.parametrize("sample_kw", [
    dict(length=60),
    dict(length=300, num_samples=3, temperature=0.7),  # long enough for the input table
    dict(length=40, greedy=True, num_samples=2),
    dict(length=40, top_k=5, top_p=0.9),
])
def test_generation_fast_path_equals_the_reference(model_kw, sample_kw):
    torch.manual_seed(1)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), **model_kw))
    cfg = SampleConfig(**sample_kw)
    prefix = VOCAB.itos[3] + VOCAB.itos[7]
    fast = sample_text(model, VOCAB, prefix, cfg, generator=torch.Generator().manual_seed(5))
    ref = _reference_samples(model, VOCAB, prefix, cfg, torch.Generator().manual_seed(5))
    assert fast == ref


def test_generation_fast_path_equals_the_module_path_for_lines_and_acrostic():
    """--lines and --acrostic: the lean step and the module called per character give the same text."""
    torch.manual_seed(2)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), embedding_size=16, hidden_size=32))
    heads = VOCAB.itos[1] + VOCAB.itos[2] + VOCAB.itos[3]

    def both(**kw):
        cfg = SampleConfig(seed=0, **kw)
        fast = sample_text(model, VOCAB, VOCAB.itos[4], cfg, generator=torch.Generator().manual_seed(9))
        handle = model.register_forward_hook(lambda *a: None)  # any hook makes generate call the module
        try:
            slow = sample_text(model, VOCAB, VOCAB.itos[4], cfg, generator=torch.Generator().manual_seed(9))
        finally:
            handle.remove()
        return fast, slow

    fast, slow = both(lines=3, max_line_length=20, num_samples=2)
    assert fast == slow and all(len([line for line in t.split("\n") if line]) == 3 for t in fast)  # (blank lines uncounted)
    cfg = SampleConfig(max_line_length=12, seed=0)
    fast = sample_text(model, VOCAB, "", cfg, acrostic=heads, generator=torch.Generator().manual_seed(4))
    handle = model.register_forward_hook(lambda *a: None)
    slow = sample_text(model, VOCAB, "", cfg, acrostic=heads, generator=torch.Generator().manual_seed(4))
    handle.remove()
    assert fast == slow and [line[0] for line in fast[0].rstrip("\n").split("\n")] == list(heads)


def test_draw_follows_the_probabilities(monkeypatch):
    probs = torch.rand(300).pow(4)
    probs[:100] = 0  # masked characters (top-k, top-p) are never drawn
    probs = probs / probs.sum()
    a = draw(probs.expand(40_000, -1), torch.Generator().manual_seed(3))
    b = draw(probs.expand(40_000, -1), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and (a >= 100).all()  # the same stream gives the same ids
    freq = torch.bincount(a, minlength=300).double() / a.numel()
    sigma = (probs.double() * (1 - probs.double()) / a.numel()).sqrt()
    assert ((freq - probs.double()).abs() <= 5 * sigma + 1e-9).all()
    # The extreme uniform numbers land on characters that can be drawn, never on masked ones at either end.
    edges = torch.tensor([[0.0, 0.25, 0.75, 0.0, 0.0]])
    for r, expected in ((0.0, 2), (1 - 2.0**-53, 1)):
        monkeypatch.setattr(torch, "rand", lambda *a, r=r, **k: torch.full(a[0], r, dtype=torch.float64))
        assert draw(edges).tolist() == [expected]


def test_generate_is_one_read_back_per_character_in_plain_mode(monkeypatch):
    """Plain --length reads the ids back once per character (streaming) and nothing else."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), embedding_size=8, hidden_size=8))
    reads = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or real(self))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: pytest.fail("a tensor was read as a bool"))
    monkeypatch.setattr(numpy_sampling, "fits", lambda *a: False)  # the torch path, as on a GPU (numpy's is the CPU's)
    steps = list(generate(model, VOCAB, VOCAB.itos[5], SampleConfig(length=25), generator=torch.Generator().manual_seed(0)))
    assert len(steps) == 26 and len(reads) == 25


@pytest.mark.parametrize("model_kw", [
    dict(embedding_size=16, hidden_size=32),
    dict(embedding_size=0, hidden_size=32),  # one-hot: the lookup table
    dict(embedding_size=16, hidden_size=24, num_layers=2),
    dict(embedding_size=16, hidden_size=32, copy_window=12, copy_dim=8),
    dict(embedding_size=16, hidden_size=32, num_layers=2, copy_window=400, copy_dim=8),  # a ring with unmade keys
])
@pytest.mark.parametrize("sample_kw", [
    dict(length=20),  # too short for the input table: the embedding times the weights
    dict(length=300, temperature=0.7),
    dict(length=40, greedy=True),
    dict(length=200, top_k=5, temperature=1.3),
    dict(length=200, top_p=0.8),
    dict(length=200, top_k=20, top_p=0.9, temperature=0.8),
    dict(lines=4, max_line_length=15),  # lines cut at 15 characters, counted
    dict(acrostic=VOCAB.itos[1] + VOCAB.itos[2] + VOCAB.itos[3], max_line_length=10, temperature=0.9),
])
def test_numpy_generation_gives_the_torch_paths_characters(model_kw, sample_kw, monkeypatch):
    """One sample on the CPU is drawn in numpy; same generator, same characters as the torch lean step."""
    torch.manual_seed(3)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), **model_kw))
    sample_kw = dict(sample_kw)
    acrostic = sample_kw.pop("acrostic", "")
    cfg = SampleConfig(**sample_kw)
    prefix = "" if acrostic else VOCAB.itos[3] + VOCAB.itos[7]
    used = []
    real = numpy_sampling.Sampler
    monkeypatch.setattr(numpy_sampling, "Sampler", lambda *a: used.append(1) or real(*a))
    gen = torch.Generator().manual_seed(11)
    fast = sample_text(model, VOCAB, prefix, cfg, acrostic=acrostic, generator=gen)
    after_fast = torch.rand(3, generator=gen)
    assert used == [1]
    if cfg.lines:
        assert fast[0].count("\n") == cfg.lines
    if acrostic:
        assert [line[0] for line in fast[0].rstrip("\n").split("\n")] == list(acrostic)
    monkeypatch.setattr(numpy_sampling, "fits", lambda *a: False)
    gen = torch.Generator().manual_seed(11)
    assert sample_text(model, VOCAB, prefix, cfg, acrostic=acrostic, generator=gen) == fast
    if not (cfg.lines or acrostic):  # (one that stops at its last line may leave drawn numbers of a block unused)
        assert torch.equal(torch.rand(3, generator=gen), after_fast)  # the generator left where the torch path leaves it


@pytest.mark.parametrize("model_kw", [
    dict(cell="lstm", embedding_size=16, hidden_size=32, num_layers=2),
    dict(cell="lstm", embedding_size=0, hidden_size=32, copy_window=9, copy_dim=8),  # the ring wraps round
    dict(cell="gru", embedding_size=16, hidden_size=24, copy_window=50, copy_dim=8),  # a ring with unmade keys
])
@pytest.mark.parametrize("n", [1, 3])
def test_graph_step_protocol_equals_the_lean_step(model_kw, n):
    """The CUDA-graph step's protocol (static ids, state updated in place, the warm-up undone), run on the CPU."""
    torch.manual_seed(5)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), **model_kw)).eval()
    x = torch.randint(0, len(VOCAB), (n, 40))
    with torch.no_grad():
        _, state = model(x[:, :6])
        kept = [t.clone() for t in (state if isinstance(state, tuple) else (state,))]
        lean = sampling.one_step(model, state, 1000)
        graph = sampling._GraphStep(sampling.one_step(model, state, 1000))
        for t in range(6, 40):
            torch.testing.assert_close(graph(x[:, t]), lean(x[:, t]), rtol=0, atol=0)
    for a, b in zip(kept, state if isinstance(state, tuple) else (state,)):
        assert torch.equal(a, b)  # the caller's state is left alone


@pytest.mark.parametrize("model_kw", [
    dict(embedding_size=16, hidden_size=32, num_layers=2),
    dict(embedding_size=0, hidden_size=32, copy_window=9, copy_dim=8),
])
def test_numpy_step_equals_the_model(model_kw):
    """The numpy step's log-probabilities, character by character, are the model's over the whole text."""
    torch.manual_seed(4)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), **model_kw)).eval()
    x = torch.randint(0, len(VOCAB), (1, 40))
    with torch.no_grad():
        whole, _ = model(x)
        logits, state = model(x[:, :5])
        net = numpy_sampling._NumpyStep(sampling.one_step(model, state, 1000))
        steps = [logits[0, -1]] + [torch.from_numpy(net(t)[0]) for t in x[0, 5:].tolist()]
    if model.copy is None:  # the plain model's logits are log-probabilities up to a constant per step
        whole, steps = whole.log_softmax(-1), [s.log_softmax(-1) for s in steps]
    torch.testing.assert_close(torch.stack(steps), whole[0, 4:], rtol=1e-4, atol=1e-4)


def test_trainer_uses_the_step_function(tmp_path):
    t = train_tiny(tmp_path, epochs=1)
    assert isinstance(t._step_fn, TrainStep) and t._step_fn.forward is t.model
    assert isinstance(t.optimizer.param_groups[0]["lr"], float)


def test_fp16_clips_the_unscaled_gradients():
    """Under fp16 the gradients are unscaled before clipping: an update is --grad-clip long, not that divided by the
    loss scale (the step is built directly, as fp16 is refused on the CPU; the scratch cell runs fp16 here)."""
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=25, embedding_size=8, hidden_size=8, tie_weights=False, cell="scratch"))
    params = [p for p in m.parameters() if p.requires_grad]
    cfg = dataclasses.replace(TrainConfig(), precision="fp16", grad_clip=1e-3, optimizer="sgd", lr=1.0)
    step = TrainStep(m, m, params, torch.optim.SGD(params, lr=1.0), cfg, CPU)
    x, y = torch.randint(0, 25, (4, 16)), torch.randint(0, 25, (4, 16))
    before = torch.cat([p.detach().flatten().clone() for p in params])
    step(x, y, None)
    after = torch.cat([p.detach().flatten() for p in params])
    assert float((after - before).norm()) == pytest.approx(1e-3, rel=1e-3)


def test_a_restored_fused_optimizer_has_its_step_counters_where_its_kernels_read_them():
    """PyTorch places a restored Adam's step counter by the saving run's kernels: from a foreach run it stays as that
    run kept it (a CPU tensor, in the default dtype), which a fused or capturable Adam on a GPU cannot read."""
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    fused = build_optimizer(params, TrainConfig(optimizer="adam"), CPU)
    if not fused.param_groups[0].get("fused"):
        pytest.skip(f"PyTorch {torch.__version__} has no fused CPU Adam (torch >= 2.4 has)")
    plain = torch.optim.Adam(params, foreach=True)
    for opt in (fused, plain):
        params[0].grad = torch.ones(3, 3)
        opt.step()
        opt.state[params[0]]["step"] = torch.tensor(1.0, dtype=torch.float64)  # as a float64 default dtype leaves it
    step_mod.prepare_optimizer(fused, TrainConfig(optimizer="adam"), CPU)
    step_mod.prepare_optimizer(plain, TrainConfig(optimizer="adam"), CPU)
    assert fused.state[params[0]]["step"].dtype == torch.float32 and float(fused.state[params[0]]["step"]) == 1.0
    assert plain.state[params[0]]["step"].dtype == torch.float64  # a foreach one reads any: left as it is


def test_a_graph_with_sgd_where_fused_sgd_is_missing_is_refused(monkeypatch):
    """torch < 2.3 has no fused SGD; foreach SGD reads its rate as a number, so a captured graph would keep the first."""
    real = torch.optim.SGD

    def no_fused(*a, fused=None, **kw):
        if fused:
            raise TypeError("SGD.__init__() got an unexpected keyword argument 'fused'")
        return real(*a, **kw)

    monkeypatch.setattr(torch.optim, "SGD", no_fused)
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    with pytest.raises(CharlmError, match="--cuda-graph with --optimizer sgd needs fused SGD"):
        build_optimizer(params, TrainConfig(optimizer="sgd", cuda_graph=True, device="auto"), CPU)
    assert build_optimizer(params, TrainConfig(optimizer="sgd"), CPU).param_groups[0]["foreach"]  # without a graph: foreach


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_a_restored_optimizer_keeps_the_kernels_it_was_built_with(optimizer, monkeypatch):
    """A checkpoint saved with fused kernels (torch >= 2.4 has them on the CPU) resumes where only foreach exists."""
    from charlm.train import load_optimizer_state

    params = [torch.nn.Parameter(torch.randn(3, 3))]
    cfg = TrainConfig(optimizer=optimizer, lr=1e-2, momentum=0.9)  # (SGD keeps a state with momentum)
    saved = build_optimizer(params, cfg, CPU)  # fused here
    if not saved.param_groups[0].get("fused"):
        pytest.skip(f"PyTorch {torch.__version__} has no fused CPU {optimizer} to save a checkpoint with (torch >= 2.4 has)")
    params[0].grad = torch.ones(3, 3)
    saved.step()
    state = saved.state_dict()
    real = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW

    def no_fused(*a, fused=None, **kw):  # as torch 2.2 builds it: Adam's fused is CUDA only, SGD has none
        if fused and optimizer == "sgd":
            raise TypeError("SGD.__init__() got an unexpected keyword argument 'fused'")
        if fused:
            raise RuntimeError("fused=True requires all the params to be floating point Tensors of supported devices")
        return real(*a, **kw)

    monkeypatch.setattr(torch.optim, real.__name__, no_fused)
    fresh = build_optimizer(params, cfg, CPU)
    load_optimizer_state(fresh, state)
    assert not fresh.param_groups[0]["fused"] and fresh.param_groups[0]["foreach"]
    assert fresh.state_dict()["state"][0].keys() == state["state"][0].keys()  # the moments came back
