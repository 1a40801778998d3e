"""``charlm inspect``: the report, its errors, and the page as a real browser draws it."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from charlm import inspector
from charlm.checkpoint import load_model
from charlm.cli import main
from charlm.errors import CharlmError
from charlm.train import evaluate

from .conftest import train_tiny

# Lines of the tiny corpus, with the shell's way of writing line breaks in --text, and a repeated line.
TEXT = "分开的时候我说不分开\\n你说我们还会再见\\n不分开的是我们的爱\\n分开的时候我说不分开\\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def gru_ckpt(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gru")
    train_tiny(tmp, model_kw={"cell": "gru"}, epochs=1)
    return tmp / "run" / "best"


@pytest.fixture(scope="module")
def report(tiny_ckpt, tmp_path_factory) -> Path:
    """The HTML report (and PNG beside it) of the tiny model on a few of its lines."""
    out = tmp_path_factory.mktemp("report")
    assert main(["inspect", str(tiny_ckpt), "--text", TEXT + "xyz", "--out", str(out / "r.html"), "--png", str(out / "r.png")]) == 0
    return out / "r.html"


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1))

def random_model(text: str, **kw):
    """An untrained CharLM (embedding 8, hidden 12, seed 0; ``kw`` into its config) and the vocabulary of ``text``."""
    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.vocab import Vocab

    vocab = Vocab.build(text)
    torch.manual_seed(0)
    return CharLM(ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12, **kw)).eval(), vocab



def test_writes_html_and_png(report, capsys):
    html = report.read_text(encoding="utf-8")
    assert html.startswith('<!DOCTYPE html><html lang="en">') and html.rstrip().endswith("</html>")  # English prose, read so
    assert '<div id="text" class="text" lang="zh">' in html and '<td class="big" lang="zh">' in html  # Chinese text: its fonts, voice
    assert html.count('<canvas class="hm" role="img" aria-label="') == html.count("<canvas")  # a screen reader is told what they are
    data = page_data(html)
    assert data["n"] == len(TEXT.replace("\\n", "\n"))  # xyz is not read
    assert len(data["bits"]) == len(data["top"]) == data["n"] and data["bits"][0] is None
    assert all(len(t) == 5 and abs(sum(p for _, p in t)) <= 1.0001 for t in data["top"])
    assert "surprisal" in html and "forget gate" in html and "bits</td>" in html
    assert "↵" in html  # \n in --text is a line break
    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 400 and img.shape[1] > 800
    assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100  # heatmaps, not a blank page
    assert sorted(p.name for p in report.parent.iterdir()) == ["r.html", "r.png"]  # no temporary files left


def test_page_loads_nothing_from_outside(report):
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html


def test_unknown_characters_are_shown_and_skipped(report):
    html = report.read_text(encoding="utf-8")
    assert "3 characters outside the model&#x27;s vocabulary skipped" in html
    n = len(TEXT.replace("\\n", "\n"))  # all read but xyz: counted apart, as eval counts read = scored + skipped
    assert f"{n} characters read, 3 skipped" in html
    assert all(f'class="ch skip" title="not in the model\'s vocabulary: skipped">{c}<' in html for c in "xyz")


def test_surprisal_agrees_with_eval_and_gates_with_the_model(tiny_ckpt):
    model, vocab, ckpt = load_model(tiny_ckpt)
    text = TEXT.replace("\\n", "\n")
    rep = inspector.analyse(model, vocab, str(tiny_ckpt), text)
    loss, n = evaluate(model, torch.tensor(vocab.encode(text)))
    assert np.nansum(rep.bits) == pytest.approx(loss * n / math.log(2), rel=1e-4)
    # The ScratchLSTM loaded with the checkpoint's weights computes what the model's own LSTM does.
    ids = torch.tensor(vocab.encode(text))
    with torch.no_grad():
        y, _ = model.rnn(model.embedding(ids[None]))
    np.testing.assert_allclose(rep.acts["hidden"], y[0].numpy(), atol=1e-5)
    with torch.no_grad():  # the five guesses after each character are the model's five most likely, with its probabilities
        probs = model(ids[None])[0][0].softmax(-1)
    for k in (0, len(ids) - 1):
        p, idx = probs[k].topk(5)
        assert [c for c, _ in rep.top[k]] == [vocab.itos[i] for i in idx.tolist()]
        np.testing.assert_allclose([q for _, q in rep.top[k]], p.numpy(), rtol=1e-4)


@pytest.mark.parametrize("layer", [0, 1])
def test_a_deeper_model_shows_the_layer_asked_for_and_a_copy_model_its_whole_surprisal(layer):
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text, num_layers=2, copy_window=16)
    rep = inspector.analyse(model, vocab, "model", text, layer=layer)
    ids = torch.tensor(vocab.encode(text))
    loss, n = evaluate(model, ids)  # the whole model: the LSTM's prediction mixed with the copy attention's
    assert np.nansum(rep.bits) == pytest.approx(loss * n / math.log(2), rel=1e-4)
    with torch.no_grad():
        one = torch.nn.LSTM(8, 12, num_layers=layer + 1, batch_first=True)  # the model's LSTM cut after the layer asked for
        one.load_state_dict({k: v for k, v in model.rnn.state_dict().items() if int(k[-1]) <= layer})
        y, _ = one(model.embedding(ids[None]))
    np.testing.assert_allclose(rep.acts["hidden"], y[0].numpy(), atol=1e-5)


def test_finds_units_that_follow_visible_features():
    text = "一二三四五\n六七八\n一二三四五\n九十一二三四\n六七八\n"
    pos = list(range(len(text)))
    feats = inspector.line_features(text, pos)
    assert feats["position"][1][:7].tolist() == [0, 1, 2, 3, 4, 5, 0]
    assert feats["line_break"][1].sum() == 5 and feats["line_end"][1][4] == 1
    assert feats["repeated"][1][10:16].tolist() == [1] * 6 and feats["repeated"][1][:10].sum() == 0 and feats["repeated"][1][23:27].sum() == 4
    rng = np.random.default_rng(0)
    acts = {q: rng.uniform(0, 1, (len(text), 8)) for q in ("input", "forget", "output", "cell")}
    acts["cell"][:, 5] = feats["position"][1] + rng.normal(0, 0.1, len(text))
    acts["forget"][:, 2] = 1 - feats["line_break"][1]
    found, notes = inspector.find_units(acts, feats)
    by = {(f.feature, f.unit, f.quantity): f.r for f in found}
    assert by[("position", 5, "cell")] > 0.95
    assert by[("line_break", 2, "forget")] == pytest.approx(-1.0)
    assert found[0].unit == 5
    order = list(dict.fromkeys(f.unit for f in found))
    units = inspector.default_units({**acts, "hidden": acts["cell"]}, found)
    assert units[: len(order)] == order and sorted(units) == list(range(8))  # found first, then the rest by variance
    assert inspector.find_units({q: a[:10] for q, a in acts.items()}, {k: (d, v[:10]) for k, (d, v) in feats.items()})[0] == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", ""], "empty"),
        (["--text", "分" * (inspector.MAX_CHARS + 1)], "at most 2,000"),
        (["--text", "xyz"], "no character of the text is in the model's vocabulary"),
        (["--text", "分开", "--layer", "1"], "--layer 1 does not exist"),
        (["--text", "分开", "--units", "0,999"], "unit 999 does not exist"),
        (["--text", "分开", "--units", "a,b"], "--units takes unit numbers"),
        (["--text", "分开", "--units", " , "], "--units names no unit"),
        (["--text", "分开", "--units", ""], "--units names no unit"),
        ([], "exactly one of --text or --file"),
        (["--text", "分开", "--context", ""], "the context (--context) is empty"),
        (["--text", "分开", "--context", "分" * (inspector.MAX_CONTEXT + 1)], "inspect reads at most 2,000 of it"),
        (["--text", "分开", "--context", "你", "--context-file", "c.txt"], "one of --context or --context-file, not both"),
        (["--text", "分开", "--context-file", "no-such.txt"], "no-such.txt"),
        (["--text", "xyz", "--context", "分开"], "no character of the text is in the model's vocabulary"),
        (["--text", "分开", "--context", "xyz"], "no character of the context is in the model's vocabulary"),
        (["--text", "分\udcff开"], "--text '分\\xff开' is not valid UTF-8"),  # a byte of another encoding, as Python passes argv
        (["--text", "分开", "--context", "\udcc4\udce3"], "--context '\\xc4\\xe3' is not valid UTF-8"),
        (["--text", "分开", "--context", "你", "--encoding", "no-such-codec"], "--encoding is the encoding of --file and --context-file, and neither is given"),
    ],
)
def test_bad_input_is_a_one_line_error_and_writes_nothing(tiny_ckpt, tmp_path, capsys, args, message):
    out = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), *args, "--out", str(out), "--png", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charlm: error:") and "\n" not in err and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where, message", [
    (lambda t: ["--out", str(t), "--png", str(t / "r.png")], "is a folder; give a file name"),
    (lambda t: ["--out", str(t / "r.html"), "--png", str(t / "afile" / "r.png")], "afile is a file"),
])
def test_an_output_that_cannot_be_written_is_refused_before_anything_is(tiny_ckpt, tmp_path, capsys, where, message):
    (tmp_path / "afile").write_text("x")
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", *where(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charlm: error:") and "\n" not in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # neither the HTML nor the PNG


@pytest.mark.parametrize("names, message", [
    (("r.html", "r.html"), "--png and --out are the same file"),
    (("r.png", None), "is the HTML report; the picture is --png"),
    (("r.html", "r.JPG"), "the picture is written as PNG, and .JPG says otherwise; name it "),
    (("r.html", "r.avif"), "the picture is written as PNG, and .avif says otherwise; name it "),
    (("r.html", "r.ppm"), "the picture is written as PNG, and .ppm says otherwise; name it "),
    (("r.pdf", None), "the report is written as HTML, and .pdf says otherwise; name it "),  # (was HTML named .pdf)
])
def test_outputs_that_would_clobber_each_other_are_refused(tiny_ckpt, tmp_path, capsys, names, message):
    out, png = names
    args = ["--out", str(tmp_path / out)] + (["--png", str(tmp_path / png)] if png else [])
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charlm: error:") and "\n" not in err and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_picture_name_whose_suffix_is_its_own_is_written(tiny_ckpt, tmp_path, capsys):
    """Only the suffixes of other picture types are refused: heat.v2 is a name, and gets the PNG."""
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", "--out", str(tmp_path / "r.html"), "--png", str(tmp_path / "heat.v2")]) == 0
    assert (tmp_path / "heat.v2").read_bytes().startswith(b"\x89PNG")


def test_a_picture_that_fails_to_write_leaves_no_page_and_names_the_file(tiny_ckpt, tmp_path, capsys, monkeypatch):
    real_open = open

    def refusing(path, *a, **k):  # the PNG's folder turns out unwritable only when written (as /sys does, even for root)
        if str(path).endswith(".tmp-" + str(os.getpid())) and ".r.png" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", refusing)
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", "--out", str(tmp_path / "r.html"), "--png", str(tmp_path / "r.png")]) == 1
    *warnings, err = capsys.readouterr().err.strip().splitlines()  # (a machine without a CJK font is warned first)
    assert err == f"charlm: error: cannot write {tmp_path / 'r.png'}: Permission denied"
    assert all(w.startswith("charlm: warning: ") for w in warnings), warnings
    assert list(tmp_path.iterdir()) == []  # not the page either, nor a temporary file


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_device_that_fails_to_take_the_picture_leaves_no_page(tiny_ckpt, tmp_path, capsys):
    """--png /dev/full: the device is written before the page is renamed into place, so its failure leaves no page."""
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", "--out", str(tmp_path / "r.html"), "--png", "/dev/full"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "charlm: error: cannot write /dev/full: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_where_the_page_goes_is_named_not_the_temporary_file(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """A rename that fails (here: a folder took the page's name after the checks) names the file asked for."""
    real = inspector.write_atomic

    def late_folder(*files):
        (tmp_path / "r.html").mkdir()
        return real(*files)

    monkeypatch.setattr(inspector, "write_atomic", late_folder)
    assert main(["inspect", str(tiny_ckpt), "--text", "分开", "--out", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"charlm: error: cannot write {tmp_path / 'r.html'}: Is a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # the folder alone: no temporary file left


def test_a_skipped_character_does_not_hide_a_line_end():
    """An unknown character at a line's end is skipped: the character before it ends the line the model read."""
    raw = "一二三四五X\n六七八\n"
    positions = [i for i, c in enumerate(raw) if c != "X"]
    feats = inspector.line_features(raw, positions)
    assert feats["line_end"][1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    assert feats["position"][1].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]


def test_a_copy_attention_model_says_the_surprisal_is_not_the_lstms_alone(tmp_path, capsys):
    train_tiny(tmp_path, model_kw={"copy_window": 16}, epochs=1)
    assert main(["inspect", str(tmp_path / "run" / "best"), "--text", "分开的时候", "--out", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "copy attention over the last 16 characters read" in out and "the gates and cell state are the LSTM's alone" in out
    assert "copy attention over 16 characters" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_gru_checkpoint_is_a_clear_error(gru_ckpt, tmp_path, capsys):
    assert main(["inspect", str(gru_ckpt), "--text", "分开", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charlm: error:") and "gru" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_file_units_and_layer_options(tiny_ckpt, tmp_path, capsys):
    f = tmp_path / "lines.txt"
    f.write_text("分开的时候\r\n你说我们\r\n", encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), "--file", str(f), "--units", "3, 0,3", "--layer", "0", "--out", str(out)]) == 0
    data = page_data(out.read_text(encoding="utf-8"))
    assert data["units"] == [3, 0] and data["n"] == 11
    assert "units 3,0" in capsys.readouterr().out


def test_a_failure_leaves_an_existing_report_untouched(tiny_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("old report", encoding="utf-8")

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(inspector, "render_png", broken)
    with pytest.raises(RuntimeError):
        main(["inspect", str(tiny_ckpt), "--text", "分开", "--out", str(out), "--png", str(tmp_path / "r.png")])
    assert out.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def screenshot(page: Path, png: Path, profile: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000",
           "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
    r = subprocess.run(cmd + [page.as_uri()], capture_output=True, text=True, timeout=120)
    assert png.exists(), r.stderr[-2000:]
    return r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_browser_draws_the_heatmaps(report, tmp_path):
    """Headless Chromium renders the page; the heatmap canvases are really drawn by its script."""
    import matplotlib.image

    log = screenshot(report, tmp_path / "on.png", tmp_path / "profile-on")
    # The same page without its drawing script: what the canvases look like undrawn.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<script>.*?</script>", "", report.read_text(encoding="utf-8"), flags=re.S), encoding="utf-8")
    screenshot(bare, tmp_path / "off.png", tmp_path / "profile-off")
    assert "Uncaught" not in log, log[-2000:]
    on = (matplotlib.image.imread(tmp_path / "on.png")[..., :3] * 255).astype(np.int16)
    off = (matplotlib.image.imread(tmp_path / "off.png")[..., :3] * 255).astype(np.int16)
    assert on.shape == off.shape
    drawn = np.abs(on - off).sum(axis=2) > 30  # where the script painted something
    ys, xs = np.nonzero(drawn)
    assert drawn.sum() > 40_000, drawn.sum()  # four heatmaps of 16 units x 41 characters at 16x11 px are ~115k px
    assert xs.max() - xs.min() > 500 and ys.max() - ys.min() > 400
    colours = np.unique(on[drawn], axis=0)
    assert len(colours) > 50  # a range of gate values, not one flat fill
    # viridis' ends (closed and open gates) are both there
    for rgb in ((68, 1, 84), (253, 231, 37)):
        assert (np.abs(on[drawn] - np.array(rgb)).sum(axis=1) < 60).any(), rgb


def test_png_without_a_cjk_font_warns_and_still_draws(tiny_ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inspector, "_find_cjk_font", lambda: None)
    png = tmp_path / "r.png"
    assert main(["inspect", str(tiny_ckpt), "--text", TEXT, "--out", str(tmp_path / "r.html"), "--png", str(png)]) == 0
    err = capsys.readouterr().err
    assert "no CJK font" in err and err.count("\n") == 1
    assert png.stat().st_size > 10_000


def test_found_units_left_out_by_units_have_no_colour_button(report, tiny_ckpt, tmp_path):
    found = {int(u) for u in re.findall(r'data-value="\w+:(\d+)"', report.read_text(encoding="utf-8"))}
    assert found  # the tiny model has units that follow the text's lines
    others = [u for u in range(16) if u not in found][:2]
    out = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), "--text", TEXT, "--units", ",".join(map(str, others)), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    buttons = {int(u) for u in re.findall(r'data-value="\w+:(\d+)"', html)}
    assert buttons <= set(others)  # the page holds values for the shown units only: a button for another broke the page
    assert "not among --units" in html


def test_short_texts_say_what_they_lack(tiny_ckpt, tmp_path, capsys):
    assert main(["inspect", str(tiny_ckpt), "--text", "分", "--out", str(tmp_path / "one.html")]) == 0
    out = capsys.readouterr().out
    assert "(1 character read," in out and "nan" not in out and "no surprisal" in out
    assert "nan" not in (tmp_path / "one.html").read_text(encoding="utf-8").split("<script")[0]
    assert main(["inspect", str(tiny_ckpt), "--text", "分开的时候", "--out", str(tmp_path / "short.html")]) == 0
    assert "note: the text is too short to look for units (it has 5 characters" in capsys.readouterr().out


def test_a_page_written_to_stdout_is_the_page_alone(tiny_ckpt, tmp_path):
    """``--out /dev/stdout > page.html``: the summary line goes to stderr, not after the page's </html>."""
    env = {**os.environ, "PYTHONPATH": str(Path(inspector.__file__).parents[1])}
    page = tmp_path / "page.html"
    with open(page, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "charlm", "inspect", str(tiny_ckpt), "--text", "分开的时候", "--out", "/dev/stdout"],
                           stdout=f, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert page.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert "/dev/stdout" in r.stderr  # the summary names where the page went


def test_a_finding_must_beat_an_untrained_model_and_drift_is_not_a_repeat():
    text = "一二三四五\n六七八\n九十一二\n三四五六七\n一二三四五\n六七八\n"  # the last two lines repeat the first two
    feats = inspector.line_features(text, list(range(len(text))))
    n = len(text)
    rng = np.random.default_rng(1)
    noise = lambda: rng.normal(0, 0.05, (n, 4))  # noqa: E731
    acts = {q: noise() for q in ("input", "forget", "output", "cell")}
    acts["input"][:, 0] += feats["line_break"][1]  # unit 0 reacts to line breaks (|r| near 1)
    acts["cell"][:, 1] += np.arange(n) / n  # unit 1 drifts along the text: "repeated" grows with it here
    found, _ = inspector.find_units(acts, feats)
    assert ("line_break", 0) in {(f.feature, f.unit) for f in found}
    assert ("read_so_far", 1) in {(f.feature, f.unit) for f in found}
    assert ("repeated", 1) not in {(f.feature, f.unit) for f in found}  # drift explains it at least as well
    # An untrained layer with a unit that follows line breaks as closely: no finding, and a note that says why.
    untrained = {q: noise() for q in acts}
    untrained["forget"][:, 3] -= 2 * feats["line_break"][1]
    found, notes = inspector.find_units(acts, feats, untrained)
    assert "line_break" not in {f.feature for f in found}
    assert any(x.startswith("no unit follows reading a line break more closely than a unit of an untrained model does") for x in notes)
    # ... and a weaker one: the finding stands, with the bar it passed
    untrained["forget"][:, 3] = noise()[:, 0] + 0.1 * feats["line_break"][1]
    found, _ = inspector.find_units(acts, feats, untrained)
    fu = next(f for f in found if f.feature == "line_break")
    assert fu.unit == 0 and abs(fu.r) > 0.9 and 0.4 < fu.untrained < abs(fu.r)


def test_line_features_say_what_the_model_read():
    raw = "一二三\n四五六"  # no line break after the last line
    feats = inspector.line_features(raw, list(range(len(raw))))
    assert feats["line_end"][1].tolist() == [0, 0, 1, 0, 0, 0, 0]  # 六 is last in the text, but no line break comes next
    assert feats["read_so_far"][1].tolist() == list(range(7))
    assert "reads as a space" in inspector.line_features(raw, list(range(7)), newlines="space")["line_break"][0]
    assert inspector.show_char("\u3000") != inspector.show_char(" ")  # a full-width space is not an ordinary one


def test_every_character_shown_can_be_seen():
    """A heatmap column or a text cell per code point: one with no glyph of its own would be an empty, unhoverable cell."""
    shown = {c: inspector.show_char(c) for c in "分a😀\u200d\ufe0f\u0301\x07\u2028\u00a0\ue01c"}
    assert shown["分"] == "分" and shown["a"] == "a" and shown["😀"] == "😀"
    assert shown["\u200d"] == "⟨200D⟩" and shown["\ufe0f"] == "⟨FE0F⟩" and shown["\x07"] == "⟨0007⟩" and shown["\ue01c"] == "⟨E01C⟩"
    assert shown["\u0301"] == "◌\u0301"  # an accent alone, on a dotted circle
    assert shown["\u2028"] == "⟨2028⟩" and shown["\u00a0"] == "⟨00A0⟩"


def test_memory_is_the_geometric_mean_of_the_forget_gate():
    f = np.array([[0.5, 1.0, 0.9], [0.5, 1.0, 0.4], [0.5, 1.0, 0.9]])
    kept, half = inspector.memory(f)
    np.testing.assert_allclose(kept, [0.5, 1.0, (0.9 * 0.4 * 0.9) ** (1 / 3)])
    assert half[0] == pytest.approx(1.0) and math.isinf(half[1])
    assert kept[2] ** half[2] == pytest.approx(0.5)  # half of the cell is left after that many characters


def test_ranks_are_the_places_of_each_character_among_the_models_guesses(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    text = TEXT.replace("\\n", "\n")
    rep = inspector.analyse(model, vocab, str(tiny_ckpt), text)
    ids = vocab.encode(text)
    with torch.no_grad():
        probs = model(torch.tensor(ids)[None])[0][0].softmax(-1)
    assert rep.rank[0] == 0
    for k in range(1, len(ids)):
        order = probs[k - 1].argsort(descending=True).tolist()
        assert rep.rank[k] == order.index(ids[k]) + 1 or probs[k - 1][order[rep.rank[k] - 1]] == probs[k - 1][ids[k]]
    assert (rep.rank[1:] == 1).any() and (rep.rank[1:] > 1).any()


def test_untrained_model_leaves_the_random_streams_alone(tiny_ckpt):
    model, _, _ = load_model(tiny_ckpt)
    torch.manual_seed(5)
    a = inspector.untrained_like(model)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)
    b = inspector.untrained_like(model)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # the same bar each time
    assert not torch.equal(a.rnn.weight_hh_l0, model.rnn.weight_hh_l0)


NODE = shutil.which("node")


def run_page_script(html: str, tmp_path: Path, probe: str):
    """Run the page's script in node with a bare document, then ``probe`` (which prints JSON); what it printed."""
    data = page_data(html)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    stub = ("var none = { forEach: function () {} };\n"
            "var window = { innerWidth: 1000, innerHeight: 800 };\n"
            "var document = { body: { dataset: {} }, querySelectorAll: function () { return none; }, addEventListener: function () {},\n"
            "  getElementById: function (id) { return id === 'report-data' ? { textContent: " + json.dumps(json.dumps(data)) + " }\n"
            "    : { value: 'surprisal', addEventListener: function () {}, style: {} }; } };\n"
            "var atob = function (s) { return Buffer.from(s, 'base64').toString('binary'); };\n")
    (tmp_path / "page.js").write_text(stub + script + "\n" + probe, encoding="utf-8")
    r = subprocess.run([NODE, str(tmp_path / "page.js")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_pages_step_shows_the_lstms_own_numbers(report, tiny_ckpt, tmp_path):
    """The page's script, run by node with a bare document: a hover's step has the model's values, c = f*c_prev + i*g holds
    to the digits shown, and a character's tip gives its rank and what the model expected there."""
    html = report.read_text(encoding="utf-8")
    data = page_data(html)
    got = run_page_script(html, tmp_path, "var C = window.charlm, out = [];\n"
                          "for (var k = 0; k < C.data.n; k++) out.push(C.step(1, k));\n"
                          "console.log(JSON.stringify({ steps: out, tip: C.charTip(2), value: C.value('forget', 1, 3) }));\n")
    model, vocab, _ = load_model(tiny_ckpt)
    rep = inspector.analyse(model, vocab, str(tiny_ckpt), TEXT.replace("\\n", "\n") + "xyz")  # as the page's fixture made it
    u = data["units"][1]
    assert got["value"] == pytest.approx(float(rep.acts["forget"][3, u]), abs=1e-6)  # exact values, not 8-bit levels
    num = lambda s: float(s.replace("\u2212", "-"))  # noqa: E731
    for k, step in enumerate(got["steps"]):
        vals = dict(re.findall(r"([ifgo]) = (\S+)", step.split("\n")[0]))
        for name, q in (("i", "input"), ("f", "forget"), ("g", "candidate"), ("o", "output")):
            assert num(vals[name]) == pytest.approx(float(rep.acts[q][k, u]), abs=6e-4)
        line = step.split("\n")[1]
        f, before, i, g, c = (num(x) for x in re.findall(r"\u2212?\d+\.\d{3}", line.split("=", 1)[1]))
        assert c == pytest.approx(float(rep.acts["cell"][k, u]), abs=6e-4)
        assert before == pytest.approx(float(rep.acts["cell"][k - 1, u]) if k else 0.0, abs=6e-4)
        assert f * before + i * g == pytest.approx(c, abs=0.01)
    assert f"rank {rep.rank[2]} of {len(vocab)} in what the model expected here" in got["tip"]
    assert "it expected here:" in got["tip"] and "after it, it expects:" in got["tip"]


def test_a_copy_model_shows_what_was_copied_and_what_the_lstm_alone_would_spend(tmp_path):
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text, copy_window=16)
    with torch.no_grad():  # an attention sharp enough that some keys stand out and others do not
        model.copy.query.weight.mul_(30.0)
        model.copy.sentinel_bias.fill_(0.0)
    rep = inspector.analyse(model, vocab, "model", text)
    ids = torch.tensor(vocab.encode(text))
    with torch.no_grad():  # the LSTM without the attention: the decoder's own distribution
        lstm = model.decoder(model.rnn(model.embedding(ids[None]))[0])[0].log_softmax(-1)
    np.testing.assert_allclose(rep.lstm_bits[1:], -lstm[:-1].gather(1, ids[1:, None])[:, 0].numpy() / math.log(2), rtol=1e-4)
    assert math.isnan(rep.copied[0]) and rep.copied[1] == 0 and rep.copy_from[1] == -1  # after one character no key is made yet
    assert ((rep.copied[2:] > 0) & (rep.copied[2:] < 1)).all()
    # the whole model's probability = g * the LSTM's + what the keys put on that character: between the two bounds
    whole, alone, copied = 2.0 ** -rep.bits[1:], 2.0 ** -rep.lstm_bits[1:], rep.copied[1:]
    assert ((whole - (1 - copied) * alone) > -1e-5).all() and ((whole - (1 - copied) * alone) < copied + 1e-5).all()
    with torch.no_grad():  # where each step's strongest key points, when it holds at least COPY_SOURCE
        y = model.rnn(model.embedding(ids[None]))[0]
        keys = model.copy.shares(y, ids[None], model.split_state(model.init_state(1))[1])[0][0, :, 1 + model.copy.window :]
    for k in range(2, len(ids)):
        share, m = keys[k - 1].max(dim=0)
        assert rep.copy_from[k] == (int(m) + 1 if share >= inspector.COPY_SOURCE else -1)
        assert rep.copy_from[k] < k  # an earlier character, one that followed a key
    assert (rep.copy_from[2:] >= 0).any() and (rep.copy_from[2:] == -1).any()
    assert "the copy attention gave" in rep.copy_text and f"{rep.mean_bits:.2f}" in rep.copy_text
    page = inspector.render_html(rep)
    data = page_data(page)
    assert data["copied"][0] is None and len(data["lstm_bits"]) == data["n"] and "<th>copied</th>" in page
    if NODE:  # the hover says the same
        hi, lo = int(np.argmax(rep.copy_from[2:] >= 0)) + 2, int(np.argmax(rep.copy_from[2:] < 0)) + 2
        tips = run_page_script(page, tmp_path, f"console.log(JSON.stringify([window.charlm.charTip({hi}), window.charlm.charTip({lo})]));")
        src = rep.copy_from[hi]
        assert f"copied: {rep.copied[hi] * 100:.1f}% of the probability, most for #{src + 1} “{inspector.show_char(text[src])}”" in tips[0]
        assert f"the LSTM alone: {rep.lstm_bits[hi]:.2f} bits" in tips[0]
        assert f"copied: {rep.copied[lo] * 100:.1f}% of the probability\n" in tips[1]  # spread too thin to say where from


def test_unit_choice_layer_and_cell_scale():
    rng = np.random.default_rng(0)
    hidden = rng.normal(0, 1, (40, 6)) * np.array([0.1, 3.0, 0.5, 2.0, 1.0, 0.2])
    assert inspector.default_units({"hidden": hidden}, [], k=6) == [1, 3, 4, 2, 5, 0]  # most varying first
    with pytest.raises(CharlmError, match="unit 32 does not exist: the layer has units 0 to 31"):
        inspector.parse_units("0,32", 32)
    # a feature two quantities of one unit follow: the two units listed are different ones
    text = "一二三四五\n六七八\n一二三四五\n九十一二三四\n六七八\n"
    feats = inspector.line_features(text, list(range(len(text))))
    acts = {q: rng.uniform(0, 1, (len(text), 4)) for q in ("input", "forget", "output", "cell")}
    acts["cell"][:, 0] = acts["input"][:, 0] = feats["position"][1]
    acts["forget"][:, 2] = feats["position"][1] + rng.normal(0, 1, len(text))
    picked = [f.unit for f in inspector.find_units(acts, feats)[0] if f.feature == "position"]
    assert picked[0] == 0 and len(picked) == 2 and picked[1] != 0
    # without --layer, the last layer; each cell row divided by its own largest |c|, negative ones too
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text, num_layers=2)
    rep = inspector.analyse(model, vocab, "model", text)
    assert rep.layer == 1
    rep.acts["cell"][:, rep.units[0]] = -np.linspace(0.5, 4.0, rep.n)  # a unit whose cell is all negative
    shown, scale, _ = inspector.shown_values(rep, "cell")
    assert np.abs(shown).max() <= 1 + 1e-6 and shown[0].min() == pytest.approx(-1.0) and scale[0] == pytest.approx(4.0)


def test_a_text_of_one_line_has_no_separate_drift_and_its_findings_stand():
    """In one line the position in it is how far into the text: one feature (both made every unit drift, and the
    untrained model's bar an IndexError)."""
    text = "我不要再想你 我不要再想你 不想你不想你 我不要再想你\n"
    feats = inspector.line_features(text, list(range(len(text))))
    assert "read_so_far" not in feats and "read_so_far" in inspector.line_features(text + "你", list(range(len(text) + 1)))
    model, vocab = random_model(text)
    rep = inspector.analyse(model, vocab, "model", text)  # a page, and no drift feature in it
    assert "read_so_far" not in {f.feature for f in rep.found} and not any("how far into the text" in x for x in rep.unit_notes)
    # The bar is the largest |r| of any untrained unit, one that drifts too.
    text = "一二三四五\n六七八\n九十一二\n三四五六七\n一二三\n"
    feats = inspector.line_features(text, list(range(len(text))))
    n, position, drift = len(text), feats["position"][1], feats["read_so_far"][1]
    rng = np.random.default_rng(2)
    acts = {q: rng.normal(0, 0.05, (n, 3)) for q in ("input", "forget", "output", "cell")}
    acts["cell"][:, 0] += position
    untrained = {q: rng.normal(0, 0.05, (n, 3)) for q in acts}
    untrained["input"][:, 1] += 0.6 * position / position.max() + drift / n  # follows the position, and the drift more
    bar = max(abs(r) for q in acts for r in inspector.correlations(untrained[q], position))
    fu = next(f for f in inspector.find_units(acts, feats, untrained)[0] if f.feature == "position")
    assert fu.unit == 0 and fu.untrained == pytest.approx(bar) and bar > 0.4


def test_a_context_is_read_first_and_only_the_text_is_shown(tiny_ckpt, tmp_path):
    """--context: the text starts from the state the context left, and each figure shown is the one the model computes
    reading context and text as one stream; a line the context began goes on, one it held is a repeat."""
    lines = TEXT.replace("\\n", "\n")
    context, text = lines[:14], lines[14:]  # the context ends inside the line 你说我们还会再见
    model, vocab, _ = load_model(tiny_ckpt)
    whole = inspector.analyse(model, vocab, "model", context + text)
    rep = inspector.analyse(model, vocab, "model", text, context=context)
    c = len(context)
    assert rep.context_read == c and rep.n == len(text) and rep.raw == text and rep.positions == list(range(len(text)))
    assert not math.isnan(rep.bits[0])  # the first character shown has something before it
    np.testing.assert_allclose(rep.bits, whole.bits[c:], rtol=1e-5)
    assert rep.rank.tolist() == whole.rank[c:].tolist() and rep.top == whole.top[c:] and rep.top_before == whole.top[c - 1]
    for q in rep.acts:
        np.testing.assert_allclose(rep.acts[q], whole.acts[q][c:], atol=1e-6)
    np.testing.assert_allclose(rep.cell_before, whole.acts["cell"][c - 1], atol=1e-6)
    loss, n = evaluate(model, torch.tensor(vocab.encode(context + text)))  # the context's bits and the text's add up to eval's
    ctx_loss, m = evaluate(model, torch.tensor(vocab.encode(context)))
    assert np.sum(rep.bits) == pytest.approx((loss * n - ctx_loss * m) / math.log(2), rel=1e-4)
    assert rep.features["position"][1][:4].tolist() == [3, 4, 5, 6]  # the line the context began (你说我) goes on
    assert rep.features["repeated"][1][-12:].tolist() == [0] + [1] * 11  # the last line (and its break) repeats the context's first
    assert rep.features["read_so_far"][0] == "how far into the text shown (characters read after the context)"  # not "from
    assert "zero start state" in whole.features["read_so_far"][0]  # the zero start state": the context's state it is
    # a text inside one line has no drift feature beside the position, though the context has lines
    assert "read_so_far" not in inspector.line_features(context + "不分开的是", list(range(c + 5)), start=c)
    page = inspector.render_html(rep)
    data = page_data(page)
    assert data["bits"][0] == pytest.approx(rep.bits[0], abs=1e-3) and "after 14 of context" in page
    assert "zero start state" not in page and "zero start state" in inspector.render_html(whole)
    assert "The model first read 14 characters of context" in page and "<td>—</td>" not in page
    if NODE:  # a hover on the first character: its step starts from the context's cell, its tip says what was expected
        u = 2
        got = run_page_script(page, tmp_path, f"console.log(JSON.stringify([window.charlm.step({u}, 0), window.charlm.charTip(0)]));")
        assert "the state the context left" in got[0]
        before = float(re.findall(r"\u2212?\d+\.\d{3}", got[0].split("\n")[1].split("=", 1)[1])[1].replace("\u2212", "-"))
        assert before == pytest.approx(float(rep.cell_before[data["units"][u]]), abs=6e-4)
        assert f"rank {rep.rank[0]} of {len(vocab)}" in got[1] and "it expected here:" in got[1]
    # from the command line, the context from a file: the same page
    (tmp_path / "ctx.txt").write_text(context, encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), "--text", text.replace("\n", "\\n"), "--context-file", str(tmp_path / "ctx.txt"), "--out", str(out)]) == 0
    assert page_data(out.read_text(encoding="utf-8"))["bits"] == data["bits"]


def test_a_copy_from_the_context_is_said_to_be_from_the_context(tmp_path):
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text, copy_window=16)
    with torch.no_grad():  # an attention sharp enough that keys in the context, in the text and neither stand out
        model.copy.query.weight.mul_(100.0)
        model.copy.sentinel_bias.fill_(0.0)
    context, shown = text[:23], text[23:]  # the last line repeats the context's first
    whole = inspector.analyse(model, vocab, "model", context + shown)
    rep = inspector.analyse(model, vocab, "model", shown, context=context)
    c = len(context)
    expected = np.where(whole.copy_from[c:] >= c, whole.copy_from[c:] - c, np.where(whole.copy_from[c:] >= 0, inspector.IN_CONTEXT, -1))
    assert rep.copy_from.tolist() == expected.tolist()
    assert {-1, inspector.IN_CONTEXT} < set(rep.copy_from.tolist()) and (rep.copy_from >= 0).any()
    np.testing.assert_allclose(rep.copied, whole.copied[c:], rtol=1e-5)
    np.testing.assert_allclose(rep.lstm_bits, whole.lstm_bits[c:], rtol=1e-5)
    page = inspector.render_html(rep)
    assert "(most: from the context)" in page
    one = inspector.analyse(model, vocab, "model", shown, context=context[-1])  # one character of it: no "1 characters"
    assert "the model read 1 character of context first" in one.notes[0] and "first read 1 character of context," in inspector.render_html(one)
    if NODE:
        k = int(np.argmax(rep.copy_from == inspector.IN_CONTEXT))
        tip = run_page_script(page, tmp_path, f"console.log(JSON.stringify(window.charlm.charTip({k})));")
        assert "most for a character of the context read first" in tip


def test_a_half_life_longer_than_the_text_says_it_is_extrapolated():
    model, vocab = random_model("分开")
    with torch.no_grad():  # forget gates that keep most of the cell
        model.rnn.bias_ih_l0[12:24] += 3.0
    rep = inspector.analyse(model, vocab, "model", "分开")
    kept, half = rep.memory
    u = int(np.argmax(kept))
    assert half[u] > 2 and f"unit {u}, keeps {kept[u]:.2f} ({half[u]:.1f} characters, beyond the 2 of this text: extrapolated)" in rep.memory_text
    assert "extrapolated" in inspector.render_html(rep)
    assert "extrapolated" not in inspector._chars(1.5, 2) and inspector._chars(math.inf, 2) == "never (f = 1)"


def test_analyse_checks_what_the_command_line_checks(tiny_ckpt):
    """From Python too: Windows line endings are line breaks (they crashed), and the limits, units and newlines are
    checked (units=[999] was numpy's IndexError; 2,400 characters went through)."""
    model, vocab, _ = load_model(tiny_ckpt)
    text = TEXT.replace("\\n", "\n")
    rep = inspector.analyse(model, vocab, "m", text.replace("\n", "\r\n"), context="分开\r\n")
    assert rep.raw == text and rep.bits.tolist() == inspector.analyse(model, vocab, "m", text, context="分开\n").bits.tolist()
    for kw, message in (({"units": [999]}, "unit 999 does not exist"), ({"units": [-1]}, "unit -1 does not exist"),
                        ({"units": []}, "no unit to show"), ({"units": "0,5"}, "units must be unit numbers"),
                        ({"units": 5}, "units must be unit numbers")):
        with pytest.raises(CharlmError, match=message):
            inspector.analyse(model, vocab, "m", text, **kw)
    assert inspector.analyse(model, vocab, "m", text, units=[3, 3, 1]).units == [3, 1]
    assert inspector.analyse(model, vocab, "m", text, units=(u for u in (2, 4))).units == [2, 4]  # any iterable
    with pytest.raises(CharlmError, match="must be strings"):
        inspector.analyse(model, vocab, "m", None)
    with pytest.raises(CharlmError, match="the text to inspect is empty"):
        inspector.analyse(model, vocab, "m", "")
    with pytest.raises(CharlmError, match="inspect reads at most 2,000"):
        inspector.analyse(model, vocab, "m", "分" * 2001)
    with pytest.raises(CharlmError, match="inspect reads at most 2,000 of it"):
        inspector.analyse(model, vocab, "m", text, context="分" * 2001)
    with pytest.raises(ValueError, match="newlines must be 'keep' or 'space'"):
        inspector.analyse(model, vocab, "m", text, newlines="bogus")


def test_analyse_leaves_the_random_stream_alone(tiny_ckpt):
    model, vocab, _ = load_model(tiny_ckpt)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    inspector.analyse(model, vocab, "m", TEXT.replace("\\n", "\n"))
    assert torch.equal(torch.get_rng_state(), before)


def test_an_enclosing_mark_alone_sits_on_a_dotted_circle():
    assert inspector.show_char("\u20dd") == "◌\u20dd" and inspector.show_char("\u20e3") == "◌\u20e3"  # category Me


@pytest.mark.skipif(not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
                    reason="needs Debian's chromium and chromium-driver")
def test_page_fits_a_phone_screen(report, tmp_path, monkeypatch):
    """At 320 CSS pixels (WCAG's reflow width) a wide heatmap or table scrolls in its own section, not the page."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 320, "height": 800, "pixelRatio": 1}})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(report.as_uri())
        assert driver.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]") == [320, 320]
    finally:
        driver.quit()


def test_accents_typed_in_the_other_unicode_form_are_read_as_the_vocabulary_holds_them():
    import unicodedata

    composed = "le café est très bon\nla crème brûlée\n"  # é as one code point, as the corpus holds it
    model, vocab = random_model(composed)
    decomposed = unicodedata.normalize("NFD", composed)  # e + U+0301, as some keyboards and files write it
    assert decomposed != composed
    rep = inspector.analyse(model, vocab, "model", decomposed, context=unicodedata.normalize("NFD", "café\n"))
    same = inspector.analyse(model, vocab, "model", composed, context="café\n")
    assert rep.raw == composed and None not in rep.read_as  # nothing skipped: the accents are the vocabulary's é and è
    np.testing.assert_allclose(rep.bits, same.bits, equal_nan=True)
    assert any("Unicode form" in n for n in rep.notes) and not any("Unicode form" in n for n in same.notes)
    near = ("le café " * 300)[: inspector.MAX_CHARS]  # the limit is on the text as given, not as decomposed
    assert inspector.analyse(model, vocab, "model", unicodedata.normalize("NFC", near)).raw == near


def test_the_picture_names_the_characters_it_leaves_out_and_explains_its_marks():
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text)
    rep = inspector.analyse(model, vocab, "model", "Z" + text[:20] + "☃")
    key = inspector.png_key(rep, rep.n)
    assert "left out, outside the vocabulary: Z ☃" in key and "grey: a character nothing predicts" in key  # (was silent)
    assert "left out" not in inspector.png_key(inspector.analyse(model, vocab, "model", text[:20]), 20)
    assert inspector.render_png(rep).startswith(b"\x89PNG")
    assert inspector.png_key(rep, 10).endswith("left out, outside the vocabulary: Z")  # ☃ comes after the 10 characters drawn
    after = inspector.analyse(model, vocab, "model", text[:12] + "☃" + text[12:20])  # right after the last one drawn
    assert "left out" not in inspector.png_key(after, 12) and "☃" in inspector.png_key(after, after.n)
    long = text * 3  # long enough to look for units: the ★ explained only where a row is marked
    found = inspector.analyse(model, vocab, "model", long)
    others = [u for u in range(model.cfg.hidden_size) if u not in {f.unit for f in found.found}][:3]
    for rep, starred in ((found, bool(found.found)), (inspector.analyse(model, vocab, "model", long, units=others), False)):
        assert ("★" in inspector.png_key(rep, rep.n)) == starred


def test_the_report_says_what_a_negative_r_means_the_layers_gates_at_line_breaks_and_how_a_column_reads():
    """(a learner's questions) "unit 189 (input gate) follows reading a line break: r = -0.86" reads as opening there,
    when it closes; the layer's gates at the breaks were only in the docs' prose; a character's surprisal sits above the
    column of the step that reads it, though the guess came from the column before; the longest-keeping unit could be
    one not shown."""
    text = TEXT.replace("\\n", "\n")
    model, vocab = random_model(text)
    rep = inspector.analyse(model, vocab, "model", text, units=[0, 1])
    at = np.array([c == "\n" for c in text])
    for q in ("input", "forget", "output"):
        assert f"{q} {rep.acts[q][at].mean():.2f} against {rep.acts[q][~at].mean():.2f}" in rep.gates_text
    assert inspector.analyse(model, vocab, "model", "分开的时候").gates_text == ""  # no line break: nothing to set apart
    html = inspector.render_html(rep)
    assert "The whole layer at line breaks and elsewhere: each gate&#x27;s mean" in html  # (was "acts otherwise", said alike)
    assert "the character's surprisal was the model's guess before it, from the column to its left" in html
    kept, _ = rep.memory
    u = int(np.argmax(kept))
    assert (f"--units {u} shows it" in rep.memory_text) == (u not in rep.units)
    found = [inspector.FoundUnit("line_break", "reading a line break", 3, "input", -0.86, 0.72),
             inspector.FoundUnit("position", "position within the line", 4, "cell", 0.81, 0.62)]
    assert list(map(inspector.found_line, found)) == [
        "unit 3 (input gate) follows reading a line break, in reverse (low where that is high): r = -0.86 (untrained model's best: |r| = 0.72)",
        "unit 4 (cell state) follows position within the line: r = +0.81 (untrained model's best: |r| = 0.62)"]
    tie = inspector.FoundUnit("line_break", "reading a line break", 6, "output", -0.7134, 0.7081)  # listed, for a small margin
    assert inspector.found_line(tie).endswith("r = -0.713 (untrained model's best: |r| = 0.708)")  # not -0.71 beside 0.71
    rep.found, rep.units = found, [3, 4]
    assert "−1: it falls as the feature rises, a gate that closes there" in inspector.render_html(rep)


def test_the_memory_line_sets_the_model_beside_an_untrained_one():
    """charlm's initialisation starts every forget gate near 0.5: "keeps 0.45 per character" means little without the
    untrained model's figure on the same text beside it."""
    text = "分开的时候我说不分开\n你说我们还会再见\n不分开的是我们的爱\n"
    model, vocab = random_model(text)
    rep = inspector.analyse(model, vocab, "model", text)
    base = inspector.memory(inspector.lstm_gates(inspector.untrained_like(model), torch.tensor(vocab.encode(text)))[1][0]["forget"].numpy())[0]
    assert rep.untrained_kept is not None and np.allclose(rep.untrained_kept, base)
    assert rep.memory_text.endswith(f"; an untrained model of this shape keeps {np.median(base):.2f} (median unit) and at most "
                                    f"{base.max():.2f} on this text")
    assert "an untrained model" not in inspector.analyse(model, vocab, "model", "分开的时候").memory_text  # too short for the bar
