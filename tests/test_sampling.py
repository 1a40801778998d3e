import re
import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.checkpoint import load_model
from charlm.config import SampleConfig
from charlm.errors import CharlmError
from charlm.sampling import apply_temperature, check_known, choose, generate, sample_text, top_k_filter, top_p_filter


@given(st.lists(st.floats(-20, 20), min_size=2, max_size=30), st.integers(1, 30))
def test_top_k_keeps_exactly_the_k_largest(values, k):
    logits = torch.tensor(values)
    out = top_k_filter(logits, k)
    kept = torch.isfinite(out)
    k = min(k, len(values))
    assert kept.sum() >= k  # ties at the k-th value are kept
    assert out[kept].min() >= torch.topk(logits, k).values[-1]


@settings(deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=30), st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(values, p):
    logits = torch.tensor(values)
    out = top_p_filter(logits, p)
    probs = logits.softmax(-1)
    kept = torch.isfinite(out)
    assert kept.any()
    assert probs[kept].sum() >= p - 1e-5
    # dropping the least likely kept character would fall below p
    if kept.sum() > 1:
        assert probs[kept].sum() - probs[kept].min() < p + 1e-5


def test_temperature_sharpens_and_rejects_non_positive():
    logits = torch.tensor([1.0, 2.0, 3.0])
    assert apply_temperature(logits, 0.5).softmax(-1)[2] > logits.softmax(-1)[2]
    with pytest.raises(ValueError):
        apply_temperature(logits, 0)


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 5.0, 0.2], [3.0, 0.0, 0.0]])
    assert choose(logits, SampleConfig(greedy=True)).tolist() == [1, 0]


def test_same_seed_same_text(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    cfg = SampleConfig(length=40)

    def draw(seed):
        return sample_text(model, vocab, "分开", cfg, generator=torch.Generator().manual_seed(seed))[0]

    assert draw(3) == draw(3)
    assert len({draw(s) for s in range(6)}) > 1


def test_prefix_is_read_once_then_one_step_per_character(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    calls = []
    handle = model.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[1]))
    sample_text(model, vocab, "分开的时候", SampleConfig(length=10, seed=0))
    handle.remove()
    assert calls[0] == 5 and all(c == 1 for c in calls[1:]) and len(calls) == 10


def test_lines_and_acrostic(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    text = sample_text(model, vocab, "分开", SampleConfig(lines=3, seed=0))[0]
    assert text.count("\n") == 3 and text.endswith("\n")
    acro = sample_text(model, vocab, "", SampleConfig(seed=0), acrostic="分开快乐")[0]
    lines = acro.rstrip("\n").split("\n")
    assert [line[0] for line in lines] == list("分开快乐")


def test_a_call_from_python_that_cannot_be_meant_is_refused_naming_what(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    with pytest.raises(CharlmError, match="prefix and acrostic do not go together"):  # the prefix was silently dropped
        sample_text(model, vocab, "分开", SampleConfig(seed=0), acrostic="快乐")
    with pytest.raises(CharlmError, match="lines and acrostic do not go together"):
        sample_text(model, vocab, "", SampleConfig(seed=0, lines=3), acrostic="快乐")
    for args, kw, message in [((model, vocab, 123, SampleConfig()), {}, "prefix must be a str, got int"),
                              ((model, vocab, None, SampleConfig()), {}, "prefix must be a str, got NoneType"),
                              ((model, vocab, "分开", SampleConfig()), {"style_prefix": b"x"}, "style_prefix must be a str, got bytes"),
                              ((model, vocab, "分开", {"length": 5}), {}, "cfg must be a SampleConfig"),
                              ((vocab, model, "分开", SampleConfig()), {}, "model must be a CharLM")]:
        with pytest.raises(TypeError, match=message):
            sample_text(*args, **kw)
        with pytest.raises(TypeError, match=message):  # checked as its first step is asked for
            next(generate(*args, **kw))


def test_num_samples_are_a_batch(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    outs = sample_text(model, vocab, "分开", SampleConfig(length=30, num_samples=4, seed=0))
    assert len(outs) == 4 and all(o.startswith("分开") and len(o) == 32 for o in outs)


def test_style_prefix_is_read_not_printed(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    styled = sample_text(model, vocab, "分开", SampleConfig(length=30, greedy=True), style_prefix="快乐的日子在心里面\n")[0]
    assert styled.startswith("分开") and "快乐的日子" not in styled[:5]
    # the style text changes the state the sample starts from
    with torch.no_grad():
        ids = torch.tensor([vocab.encode("快乐的日子在心里面\n分开")])
        assert not torch.allclose(model(ids)[0][0, -1], model(ids[:, -2:])[0][0, -1])


def test_unknown_prefix_characters(tiny_ckpt):
    _, vocab, _ = load_model(tiny_ckpt)
    with pytest.raises(CharlmError, match="'Z'"):
        check_known(vocab, "分Z开", "prefix")
    assert check_known(vocab, "分Z开", "prefix", "skip") == "分开"


def test_lines_that_never_end_by_themselves_are_cut_and_counted(tiny_ckpt):
    """A model that never writes a newline: every line is cut at --max-line-length, and --lines still gets all of them."""
    model, vocab, _ = load_model(tiny_ckpt)
    with torch.no_grad():
        model.decoder.bias[vocab.stoi["\n"]] = -1e4
    text = sample_text(model, vocab, "分开", SampleConfig(lines=3, max_line_length=7, seed=0))[0]
    lines = text.split("\n")
    assert text.count("\n") == 3 and lines[-1] == ""
    assert [len(line) for line in lines[:-1]] == [7, 7, 7]  # the first with the prefix's two characters



def test_blank_lines_do_not_count_toward_lines(tiny_ckpt):
    """A model that writes blank lines between its lines (Shakespeare's speeches): --lines 1 printed nothing at times,
    --lines 4 gave 3 lines and a blank one."""
    model, vocab, _ = load_model(tiny_ckpt)
    with torch.no_grad():
        model.decoder.bias[vocab.stoi["\n"]] = 7.0  # line breaks, some of them on lines of their own
    blank = 0
    for n in (1, 3):  # (the numpy way and the torch way)
        for seed in range(4):
            for text in sample_text(model, vocab, "", SampleConfig(lines=4, max_line_length=6, seed=seed, num_samples=n)):
                lines = text.split("\n")
                blank += "" in lines[:-1]
                assert len([line for line in lines if line]) == 4 and lines[-1] == "", text  # four lines of text
    assert blank >= 4  # (blank lines besides, in most samples)
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    bare = Vocab.build("abc")  # no line break, no space: a line is cut after its last character, which is text
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(bare), embedding_size=8, hidden_size=8))
    for n in (1, 2):
        texts = sample_text(model, bare, "ab", SampleConfig(lines=2, max_line_length=1, seed=0, num_samples=n))
        assert all(t.count("\n") == 2 for t in texts), texts  # (not counted as blank: it wrote its whole budget)


def test_what_is_written_starts_a_line_after_the_style_prefix(tiny_ckpt):
    """The style prefix was joined to the prefix ("…雨水分开", one line), and an acrostic added a line break to one that
    ended with it (a blank line, which the lyrics never have)."""
    model, vocab, _ = load_model(tiny_ckpt)
    for kw in ({"prefix": "分开", "cfg": SampleConfig(length=20, seed=2)}, {"prefix": "", "cfg": SampleConfig(length=20, seed=2)},
               {"prefix": "", "cfg": SampleConfig(seed=2), "acrostic": "我你"}):
        prefix, cfg = kw.pop("prefix"), kw.pop("cfg")
        ended = sample_text(model, vocab, prefix, cfg, style_prefix="我说不分开\n", **kw)
        assert sample_text(model, vocab, prefix, cfg, style_prefix="我说不分开", **kw) == ended, kw

def test_lines_of_a_model_without_newlines_wrap_at_a_space():
    """--newlines space models: --lines ends a line at a space once it is 3/4 long (the space shown as the break), not mid-word."""
    from charlm.copycheck import CopyIndex
    from charlm.model import CharLM
    from charlm.config import ModelConfig
    from charlm.vocab import Vocab

    vocab = Vocab.build("the cat sat on a mat by the door ")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16))
    with torch.no_grad():
        model.decoder.bias[vocab.stoi[" "]] = 2.0  # words of a few letters
    cfg = SampleConfig(lines=6, max_line_length=20, seed=3, num_samples=2)
    for text in sample_text(model, vocab, "the ", cfg):
        lines = text[len("the "):].split("\n")
        assert len(lines) == 7 and lines[-1] == ""
        # each line ended at a space drawn from 3/4 of the length on, or one put in at 20 (the first line holds the prefix)
        assert all(15 <= len(line) <= 20 for line in lines[1:-1])
        # the copy check reads the breaks as the spaces the model wrote
        assert CopyIndex("xx" + text.replace("\n", " ") + "xx").check(text).longest == len(text)


def test_long_lines_of_a_model_with_newlines_end_between_words():
    """Prose runs past --max-line-length: from 3/4 of it on, a space the model draws ends the line (as a line break the
    model reads), so a word is cut only where none came (was: every line cut at the length, mid-word)."""
    from charlm.model import CharLM
    from charlm.config import ModelConfig
    from charlm.vocab import Vocab

    vocab = Vocab.build("the cat sat on a mat by the door\n")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16)).eval()
    with torch.no_grad():
        model.decoder.bias[vocab.stoi[" "]] = 2.0  # words of a few letters,
        model.decoder.bias[vocab.stoi["\n"]] = -1e4  # and never a line break of its own: paragraphs without end
    for n in (1, 3):  # (one sample on the CPU goes the numpy way, several the torch way: the same rule)
        for text in sample_text(model, vocab, "the ", SampleConfig(lines=6, max_line_length=20, seed=3, num_samples=n)):
            lines = text.split("\n")
            assert len(lines) == 7 and lines[-1] == ""
            assert all(15 <= len(line) <= 20 and " " not in line[15:] for line in lines[:-1]), lines
            assert sum(len(line) < 20 for line in lines[:-1]) >= 3, lines  # most ended at a space, not at 20
    for seed in range(5):  # a line of at most one character: a space still starts none (3/4 of 1 rounds down to 0)
        text = sample_text(model, vocab, "", SampleConfig(lines=3, max_line_length=1, seed=seed))[0]
        assert [len(line) for line in text.split("\n")] == [1, 1, 1, 0], text


def test_the_configs_seed_seeds_sampling_without_a_generator(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    cfg = SampleConfig(length=30, temperature=0.9, seed=7)
    assert sample_text(model, vocab, "分开", cfg) == sample_text(model, vocab, "分开", cfg)
    with pytest.raises(CharlmError, match="'Z'"):  # not a KeyError
        sample_text(model, vocab, "分Z", cfg)


@pytest.mark.parametrize("max_line_length", [6, 50])
def test_an_acrostic_is_written_from_what_is_shown(tiny_ckpt, max_line_length):
    """The model reads the line heads and the line breaks it is made to write, not what it drew there: each other
    character of a greedy acrostic is the model's first choice after the text shown before it."""
    model, vocab, _ = load_model(tiny_ckpt)
    text = sample_text(model, vocab, "", SampleConfig(greedy=True, max_line_length=max_line_length), acrostic="分你不快")[0]
    assert [line[0] for line in text.rstrip("\n").split("\n")] == list("分你不快")
    with torch.no_grad():
        logits = model(torch.tensor([vocab.encode("\n" + text)]))[0][0]  # a sample from "" starts at a line's start
    best = [vocab.itos[i] for i in logits.argmax(-1).tolist()]
    col, free = 0, 0
    for k, ch in enumerate(text):
        # a head, a line break put in at the longest line, or one written for a space drawn near it
        forced = col == 0 or col >= max_line_length or (ch == "\n" and best[k] == " " and col >= max_line_length * 3 // 4)
        if not forced:
            assert best[k] == ch, (k, text)
            free += 1
        col = 0 if ch == "\n" else col + 1
    assert free >= 8


def test_sampling_leaves_the_model_in_the_mode_it_was_in_and_seed_0_is_a_seed(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    model.train()  # a user's own training loop, printing a sample now and then
    first = sample_text(model, vocab, "分开", SampleConfig(length=20, seed=0))
    assert model.training
    assert sample_text(model, vocab, "分开", SampleConfig(length=20, seed=0)) == first  # seed 0 seeds, as any other


def test_an_acrostic_head_outside_the_vocabulary_is_an_error_even_with_unk(tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True, min_freq=2)
    model, vocab, _ = load_model(tmp_path / "run" / "best")
    assert vocab.unk
    with pytest.raises(CharlmError, match="acrostic"):
        sample_text(model, vocab, "", SampleConfig(seed=1), acrostic="龘分")  # no line starts with <unk>


def test_top_p_on_exact_ties_keeps_no_more_than_reaches_p():
    logits = torch.zeros(4)  # four characters of probability 0.25 each: 0.5 is reached by two, 0.75 by three
    assert torch.isfinite(top_p_filter(logits, 0.5)).sum() == 2
    assert torch.isfinite(top_p_filter(logits, 0.75)).sum() == 3
    assert torch.isfinite(top_p_filter(logits, 0.7)).sum() == 3
    from charlm import numpy_sampling  # the one-sample path on the CPU cuts the same nucleus

    drawn = {numpy_sampling._choose(np.zeros((1, 4), np.float32), SampleConfig(top_p=0.5), iter([u])) for u in np.linspace(0.01, 0.99, 50)}
    assert drawn == {0, 1}


@pytest.mark.parametrize("num_samples", [1, 3])  # the numpy path (one sample on the CPU) and torch's
@pytest.mark.parametrize("greedy", [False, True])
def test_a_model_with_unk_never_writes_it(num_samples, greedy):
    """<unk> stands for no one character: a model trained with --unk writes the others, even where it likes <unk> best."""
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import UNK, Vocab

    vocab = Vocab.build("分开的时候\n我说不分开\n", unk=True)
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=0))
    with torch.no_grad():
        model.decoder.bias[vocab.stoi[UNK]] = 30.0  # <unk> all but certain at every step
    texts = sample_text(model, vocab, "分开", SampleConfig(seed=1, length=200, num_samples=num_samples, greedy=greedy))
    assert len(texts) == num_samples and all(len(t) == 202 and UNK not in t for t in texts), texts

    lone = Vocab(("<unk>", " "), unk=True)  # <unk> and a space: the space, every time
    only = CharLM(ModelConfig(vocab_size=2, embedding_size=8, hidden_size=16, copy_window=0))
    with torch.no_grad():
        only.decoder.bias[0] = 30.0
    texts = sample_text(only, lone, " ", SampleConfig(seed=1, length=5, num_samples=num_samples, greedy=greedy))
    assert texts == [" " * 6] * num_samples
    alone = CharLM(ModelConfig(vocab_size=1, embedding_size=8, hidden_size=16, copy_window=0))  # (an old checkpoint's)
    texts = sample_text(alone, Vocab((UNK,), unk=True), "x", SampleConfig(seed=1, length=2, num_samples=num_samples, greedy=greedy))
    assert texts == ["x" + UNK * 2] * num_samples  # all there is to write: no crash


@pytest.mark.parametrize("vocab_size", [4, 17, 64])
def test_top_p_on_ties_keeps_the_same_nucleus_on_both_paths(vocab_size):
    """The torch path (a batch, or a GPU) and the numpy path (one sample on the CPU) keep the same characters where
    ties straddle top_p's cut, so a seed writes the same text on either: the lower ids, in both."""
    from charlm import numpy_sampling

    cfg = SampleConfig(top_p=0.25)
    kept = torch.isfinite(top_p_filter(torch.zeros(vocab_size), cfg.top_p)).nonzero().flatten().tolist()
    drawn = {numpy_sampling._choose(np.zeros((1, vocab_size), np.float32), cfg, iter([u])) for u in np.linspace(0.001, 0.999, 400)}
    assert kept == sorted(drawn) == list(range(len(kept)))


@pytest.mark.parametrize("head", ["👨\u200d👩\u200d👧", "e\u0301", "❤\ufe0f", "🇨🇳"])
def test_an_acrostic_head_is_a_character_as_a_reader_sees_it(head):
    """An emoji of several code points or a letter with a combining accent heads one line whole: no line may start
    with a joiner, a variation selector or an accent on its own."""
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    vocab = Vocab.build("分开的时候\n我说不分开\n" + head + "e\u0301\n")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=0))
    for n in (1, 3):  # one sample (the numpy path) and a batch (torch's)
        for text in sample_text(model, vocab, "", SampleConfig(seed=1, num_samples=n, max_line_length=8), acrostic=head + "分" + head):
            lines = text.rstrip("\n").split("\n")
            assert len(lines) == 3 and all(line.startswith(h) for line, h in zip(lines, [head, "分", head])), text
            assert not any(unicodedata.category(line[0]) in ("Mn", "Cf") for line in lines), text


def test_an_acrostic_without_a_place_to_start_names_what_to_give(tmp_path, capsys):
    """A model of one long line (no newline, no space) has nowhere to start an acrostic's first line: --style-prefix
    is what works (--prefix does not go with --acrostic); an acrostic of spaces only is said to be that."""
    from charlm.cli import main
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import corpus_from_text
    from charlm.train import Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"), epochs=1, batch_size=2, num_steps=8, device="cpu", prefixes=())
    corpus = corpus_from_text("分开的时候我说不分开" * 30, cfg)
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=16, copy_window=0), cfg, corpus, log=None).fit()
    assert main(["generate", str(tmp_path / "run"), "--acrostic", "分开", "--seed", "1"]) == 2
    assert "nothing to start an acrostic's first line after: the model has neither a newline nor a space; give --style-prefix" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "run"), "--acrostic", "分开", "--style-prefix", "我说", "--seed", "1"]) == 0
    assert main(["generate", str(tmp_path / "run"), "--acrostic", " \u3000 ", "--seed", "1"]) == 2
    assert "the acrostic is only whitespace" in capsys.readouterr().err


def test_a_prefix_is_read_in_the_unicode_form_the_vocabulary_holds():
    """é typed as one code point (NFC) is the same text as e + U+0301 (NFD), which a corpus may hold: either is read."""
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    torch.manual_seed(0)
    for corpus_form, typed_form in (("NFD", "NFC"), ("NFC", "NFD")):
        vocab = Vocab.build(unicodedata.normalize(corpus_form, "café au lait\nné à Noël\n"))
        model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=0))
        typed = unicodedata.normalize(typed_form, "né")
        assert check_known(vocab, typed, "prefix") == unicodedata.normalize(corpus_form, "né")
        text = sample_text(model, vocab, typed, SampleConfig(seed=1, length=5))[0]
        assert unicodedata.normalize("NFC", text).startswith("né")
        assert sample_text(model, vocab, "", SampleConfig(seed=1), acrostic=unicodedata.normalize(typed_form, "éN"))
    vocab = Vocab.build("cafe\n")
    with pytest.raises(CharlmError, match=r"does not know: '\u0301' \(U\+0301\)"):  # an accent alone is named by its code point
        check_known(vocab, "cafe\u0301", "prefix")


def test_a_prefix_counts_toward_its_lines_length(tiny_ckpt):
    """--max-line-length ends a line after that many characters: those of the prefix on that line count too."""
    model, vocab, _ = load_model(tiny_ckpt)
    for seed in range(5):
        text = sample_text(model, vocab, "分开的时候我说不", SampleConfig(seed=seed, lines=2, max_line_length=10, temperature=2.0))[0]
        assert all(len(line) <= 10 for line in text.split("\n")), text
        text = sample_text(model, vocab, "你说\n分开的时候", SampleConfig(seed=seed, lines=2, max_line_length=8, temperature=2.0))[0]
        assert all(len(line) <= 8 for line in text.split("\n")), text


def test_a_long_acrostic_head_is_written_whole_and_unicode_forms_count_with_unk():
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.sampling import vocab_form
    from charlm.vocab import Vocab

    head = "👨\u200d👩\u200d👧"
    vocab = Vocab.build("分开的时候\n我说不分开\n" + head + "\n")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=0))
    text = sample_text(model, vocab, "", SampleConfig(seed=1, max_line_length=2), acrostic=head + "分")[0]
    assert [line[: len(head)] for line in text.split("\n")][:1] == [head] and text.split("\n")[1].startswith("分"), text
    unk = Vocab.build(unicodedata.normalize("NFD", "café\nné\n"), unk=True)  # <unk> would stand for é (U+00E9): not held
    assert vocab_form(unk, "né") == unicodedata.normalize("NFD", "né")


def test_the_unicode_form_that_writes_more_characters_is_chosen_not_the_one_with_fewer_unknown_code_points():
    """ぐ and げ unknown, their base kana and で known: in NFD one unknown mark (U+3099) would stand in for two unknown
    kana, and turned the known で into て + U+3099 too; counted per character, the text stays as written."""
    from charlm.sampling import check_known, dropped_chars, vocab_form
    from charlm.vocab import Vocab

    vocab = Vocab.build("吾輩でてくけ\n")
    assert vocab_form(vocab, "吾輩でぐげ") == "吾輩でぐげ"
    assert check_known(vocab, "吾輩でぐげ", "prefix", "skip") == "吾輩で" and dropped_chars(vocab, "吾輩でぐげ") == ["ぐ", "げ"]
    decomposed = Vocab.build(unicodedata.normalize("NFD", "吾輩でぐげ\n"))  # a corpus in NFD: NFC text read in its form
    assert vocab_form(decomposed, "吾輩でぐげ") == unicodedata.normalize("NFD", "吾輩でぐげ")


def test_only_the_prefixs_last_line_counts_toward_its_lines_length(tiny_ckpt):
    """A prefix of two lines: its first line's characters do not cut the second short."""
    model, vocab, _ = load_model(tiny_ckpt)
    text = sample_text(model, vocab, "你说我们还会再见\n分", SampleConfig(greedy=True, lines=2, max_line_length=4))[0]
    assert len(text.split("\n")[1]) > 1, text  # (counted from the whole prefix: cut after 分)


def test_read_inputs_checks_a_request_as_generate_does_and_names_the_field():
    """One set of checks for `charlm generate` and the server: each refusal names its field, as the caller spells it."""
    from charlm.sampling import InputError, read_inputs
    from charlm.vocab import Vocab

    vocab = Vocab.build("分开的时候\n我说不分开\n")
    flag = lambda f: "--" + f.replace("_", "-")  # noqa: E731 (as the command line spells a field)
    got = read_inputs(vocab, None, "我说\r\n", " 分 开 ", default="分开")
    assert (got.prefix, got.style_prefix, got.acrostic, got.skipped) == ("", "我说\n", "分开", {})  # an acrostic has no prefix
    assert read_inputs(vocab, None, default="分开").prefix == "分开"  # no prefix given: the run's default
    got = read_inputs(vocab, "分Z开", "Q我", unknown="skip")
    assert (got.prefix, got.style_prefix, got.skipped) == ("分开", "我", {"prefix": ["Z"], "style_prefix": ["Q"]})
    got = read_inputs(vocab, "", acrostic="分Y开", unknown="skip")
    assert (got.acrostic, got.skipped) == ("分开", {"acrostic": ["Y"]})
    got = read_inputs(vocab, None, acrostic="“分，开！”", unknown="skip")  # punctuation heads no line (nor is it unknown)
    assert (got.acrostic, got.skipped) == ("分开", {})
    keyed = Vocab.build("分开的时候\n我说不分开*\n")
    got = read_inputs(keyed, None, acrostic="*\ufe0f\u20e3分", unknown="skip")  # a keycap the model cannot write whole: skipped
    assert got.acrostic == "分" and got.skipped == {"acrostic": ["*\ufe0f\u20e3"]}  # reported whole, as dropped
    got = read_inputs(Vocab.build("e分\n"), None, acrostic="e\u0301分", unknown="skip")  # the accent unknown: é goes whole
    assert got.acrostic == "分" and got.skipped == {"acrostic": ["e\u0301"]}
    with pytest.raises(InputError, match="no character of the acrostic is in the model's vocabulary"):
        read_inputs(keyed, None, acrostic="*\ufe0f\u20e3", unknown="skip")  # not a * left alone, then dropped
    refusals = [
        (dict(prefix="分开", acrostic="我"), flag, "prefix", "--prefix and --acrostic do not go together"),
        (dict(prefix=None, acrostic=" \t "), str, "acrostic", "the acrostic is only whitespace"),
        (dict(prefix=None, acrostic="，　。"), str, "acrostic", "the acrostic is only whitespace or punctuation"),
        (dict(prefix=None, style_prefix="Q", acrostic="  "), str, "style_prefix", "does not know: 'Q'"),  # in the fields' order
        (dict(prefix="ZZ", unknown="skip"), str, "prefix", "no character of the prefix is in the model's vocabulary"),
        (dict(prefix=None, acrostic="YZ", unknown="skip"), str, "acrostic", "no character of the acrostic"),
        (dict(prefix=None, style_prefix="分Q"), flag, "style_prefix", "the style prefix has characters the model's vocabulary "
                                                                      r"does not know: 'Q' \(unknown='skip' drops them"),
    ]
    for kwargs, name, field, message in refusals:
        with pytest.raises(InputError, match=message) as e:
            read_inputs(vocab, **kwargs, name=name)
        assert e.value.field == field
    nowhere = Vocab.build("分开的时候我说不分开")  # neither a newline nor a space
    with pytest.raises(InputError, match="give --style-prefix$") as e:
        read_inputs(nowhere, None, acrostic="分", name=flag)
    assert e.value.field == "acrostic"
    with pytest.raises(InputError, match="give prefix or style_prefix$") as e:
        read_inputs(nowhere, "")
    assert e.value.field == "prefix"
    assert read_inputs(nowhere, None, "分开", acrostic="我").style_prefix == "分开"  # a style prefix is a place to start


def test_a_long_prefix_is_read_in_pieces_with_the_same_text(monkeypatch):
    """A copy attention over a prefix read whole costs memory with the square of its length (120,000 characters asked
    for 58 GB): it is read a piece at a time, the state carried, and writes what reading it whole would."""
    from charlm import sampling
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    torch.manual_seed(0)
    text = "分开的时候我说不分开\n你说我们还会再见\n" * 120
    vocab = Vocab.build(text)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=64))
    read = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda ids, state=None: (read.append(ids.shape[1]), forward(ids, state))[1])
    cfg = SampleConfig(length=40, seed=3, temperature=0.7)
    pieces = sample_text(model, vocab, text, cfg)[0]
    assert max(read) <= sampling.CONTEXT_CHUNK and sum(read) >= len(text)
    monkeypatch.setattr(sampling, "CONTEXT_CHUNK", 10**9)
    read.clear()
    whole = sample_text(model, vocab, text, cfg)[0]
    assert max(read) == len(text) and whole == pieces


def test_a_prefix_read_in_pieces_leaves_the_state_of_reading_it_whole(monkeypatch):
    """Each piece of a long prefix starts from the state the one before left: the last piece's logits and state are
    those of the prefix read whole (a sampled text alone hides a lost state: a random model forgets fast)."""
    from charlm import sampling
    from charlm.config import ModelConfig
    from charlm.model import CharLM, parts
    from charlm.vocab import Vocab

    torch.manual_seed(0)
    text = "分开的时候我说不分开\n你说我们还会再见\n" * 6
    vocab = Vocab.build(text)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=16)).eval()
    monkeypatch.setattr(sampling, "CONTEXT_CHUNK", 10)
    calls, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, state=None: (calls.append((ids, (out := forward(ids, state)))), out)[1])
    next(sampling.generate(model, vocab, text, SampleConfig(length=1, seed=1)))  # the prefix comes once it is read
    pieces = calls[: -(-len(text) // 10)]
    ids = torch.tensor([vocab.encode(text)])
    assert torch.equal(torch.cat([c[0] for c in pieces], 1), ids)
    with torch.no_grad():
        logits, state = forward(ids, None)
    (last_logits, last_state) = pieces[-1][1]
    assert torch.allclose(last_logits[:, -1], logits[:, -1], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(parts(last_state), parts(state)))


def test_a_model_in_another_float_type_samples_scores_and_is_inspected_as_in_float32():
    """A library user's model.double() (or bf16) works as the float32 model does: its state follows its weights."""
    import copy

    from charlm.config import ModelConfig
    from charlm.inspector import analyse
    from charlm.model import CharLM
    from charlm.train import evaluate
    from charlm.vocab import Vocab

    vocab = Vocab.build("分开的爱人\n我不要再想你\n")
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, copy_window=4)).eval()
    wide = copy.deepcopy(model).double()
    ids = torch.tensor(vocab.encode("分开的爱人\n我不要"))
    assert evaluate(wide, ids)[0] == pytest.approx(evaluate(model, ids)[0], rel=1e-6)
    cfg = SampleConfig(length=20, seed=3)
    assert sample_text(wide, vocab, "分开", cfg) == sample_text(model, vocab, "分开", cfg)
    assert sample_text(copy.deepcopy(model).bfloat16(), vocab, "分开", cfg)[0].startswith("分开")
    a, b = analyse(wide, vocab, "x", "分开的爱人"), analyse(model, vocab, "x", "分开的爱人")
    assert a.mean_text == b.mean_text


def test_a_model_and_a_vocabulary_of_different_checkpoints_are_refused():
    from charlm.config import ModelConfig
    from charlm.inspector import analyse
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    small, large = Vocab.build("分开了\n"), Vocab.build("分开的爱人\n我不要再想你\n")
    model = CharLM(ModelConfig(vocab_size=len(small), embedding_size=8, hidden_size=16))
    for run in (lambda: sample_text(model, large, "分开", SampleConfig(length=5, seed=1)),
                lambda: analyse(model, large, "x", "分开")):
        with pytest.raises(CharlmError, match=f"the vocabulary has {len(large)} entries but the model was made for {len(small)}"):
            run()


def test_punctuation_heads_no_acrostic_line_from_python_either(tiny_ckpt):
    """sample_text/generate leave out an acrostic's spaces and punctuation as the command line and the server do, whole
    characters at a time: a keycap emoji (#️⃣) is one head, and a symbol (～) heads a line."""
    from charlm.sampling import acrostic_heads, acrostic_letters

    model, vocab, _ = load_model(tiny_ckpt)
    text = sample_text(model, vocab, "", SampleConfig(seed=1, max_line_length=6), acrostic="分，开。")[0]
    assert [line[0] for line in text.rstrip("\n").split("\n")] == ["分", "开"], text
    cases = {"春，夏": ["春", "夏"], "#\ufe0f\u20e3春": ["#\ufe0f\u20e3", "春"], "春*\ufe0f\u20e3夏": ["春", "*\ufe0f\u20e3", "夏"],
             "\ufeff春 \u3000夏\r\n": ["春", "夏"], "春～夏★": ["春", "～", "夏", "★"], "“！”": []}
    for acrostic, heads in cases.items():
        assert acrostic_heads(acrostic_letters(acrostic)) == heads, acrostic
    for only in ("，", "\u3000", " 。 "):  # nothing to head a line: refused, as the command line and the server refuse it
        with pytest.raises(CharlmError, match="the acrostic is only whitespace or punctuation"):
            sample_text(model, vocab, "", SampleConfig(seed=1, length=30), acrostic=only)


def test_an_unknown_character_whose_other_width_is_known_is_named():
    """A half-width , typed for the corpus's full-width ， was refused without a word on what the model does know."""
    from charlm.sampling import InputError, width_twin
    from charlm.vocab import Vocab

    vocab = Vocab.build("春眠不觉晓，处处闻啼鸟 A\n")
    tail = "'x' '\\u3000'; it knows '，' for ',', ' ' for '\\u3000', in the other width (use skip)"  # ('x': no twin)
    with pytest.raises(InputError, match=re.escape(tail) + "$") as e:
        check_known(vocab, "春眠,x\u3000", "prefix", hint="use skip")
    assert "'A'" not in str(e.value)
    assert (width_twin(","), width_twin("Ａ"), width_twin("\u3000"), width_twin("春")) == ("，", "A", " ", None)
