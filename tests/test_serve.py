"""The HTTP API of ``charlm serve``, against a real uvicorn server on 127.0.0.1 in a background thread."""

import asyncio
import dataclasses
import importlib.util
import json
import math
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from charlm import cli, serve
from charlm.copycheck import CopyIndex
from charlm.checkpoint import load_model
from charlm.config import SampleConfig
from charlm.sampling import sample_text
from charlm.train import evaluate


@pytest.fixture(scope="module")
def url(tiny_ckpt):
    with serve.running(serve.create_app(tiny_ckpt, workers=8)) as base:  # 8 generations truly at once
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def sse(body: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a text/event-stream body."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def stream(client, **body) -> list[tuple[str, dict]]:
    with client.stream("POST", "/v1/generate/stream", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse(r.read().decode())


def test_healthz_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "分开" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/v1/generate/stream" in client.get("/openapi.json").json()["paths"]


def test_docs_describe_every_answer_field(client):
    """/openapi.json's response schema of each endpoint names exactly the fields its answer has (the optional ones aside)."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def properties(path, method):
        ref = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        return set(schema["properties"]), set(schema.get("required", ()))

    answers = {("/v1/model", "get"): client.get("/v1/model"), ("/healthz", "get"): client.get("/healthz"),
               ("/v1/generate", "post"): client.post("/v1/generate", json={"prefix": "分开", "length": 3, "check_copy": True}),
               ("/v1/score", "post"): client.post("/v1/score", json={"text": "分开的"})}
    for (path, method), answer in answers.items():
        assert answer.status_code == 200, (path, answer.text)
        named, required = properties(path, method)
        assert required <= set(answer.json()) <= named, path
    limits = client.get("/v1/model").json()["limits"]
    assert set(limits) == set(schemas["Limits"]["properties"]) and limits["max_body"] > limits["max_text"]


def test_generate_starts_with_prefix(client):
    r = client.post("/v1/generate", json={"prefix": "分开", "length": 12, "seed": 1, "num_samples": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["samples"]) == 2
    assert all(s.startswith("分开") and len(s) == 14 for s in body["samples"])
    assert body["finish_reason"] == "done" and body["seed"] == 1 and body["chars"] == 12


def test_same_seed_same_text_as_the_cli(client, tiny_ckpt, capsys):
    settings = {"prefix": "分开", "length": 30, "temperature": 0.9, "top_p": 0.9, "top_k": 20, "seed": 7}
    api = client.post("/v1/generate", json=settings).json()["samples"][0]
    assert cli.main(["generate", str(tiny_ckpt), "--prefix", "分开", "--length", "30", "--temperature", "0.9",
                     "--top-p", "0.9", "--top-k", "20", "--seed", "7"]) == 0
    assert capsys.readouterr().out == api + "\n"
    # Several samples and lines: the same as sample_text with the same settings.
    model, vocab, _ = load_model(tiny_ckpt)
    cfg = SampleConfig(lines=2, num_samples=3, seed=11, temperature=1.2)
    expected = sample_text(model, vocab, "不分开", cfg, generator=torch.Generator().manual_seed(11))
    got = client.post("/v1/generate", json={"prefix": "不分开", "lines": 2, "num_samples": 3, "seed": 11, "temperature": 1.2})
    assert got.json()["samples"] == expected


def test_random_seed_is_returned_and_replays(client):
    first = client.post("/v1/generate", json={"length": 20}).json()
    again = client.post("/v1/generate", json={"length": 20, "seed": first["seed"]}).json()
    assert again["samples"] == first["samples"]
    # seed 0 is a seed like any other (a drawn seed may be 0): it replays, and is not taken for "draw one"
    zeros = [client.post("/v1/generate", json={"length": 40, "seed": 0, "temperature": 2.0}).json() for _ in range(2)]
    assert zeros[0]["seed"] == zeros[1]["seed"] == 0 and zeros[0]["samples"] == zeros[1]["samples"]


def test_stream_ends_with_done_and_matches_generate(client):
    body = {"prefix": "分开", "length": 40, "seed": 3, "num_samples": 2, "temperature": 1.1}
    events = stream(client, **body)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"chunk"} and len(kinds) >= 2
    texts = ["".join(d["samples"][i] for e, d in events if e == "chunk") for i in range(2)]
    assert texts == client.post("/v1/generate", json=body).json()["samples"]
    assert events[-1][1]["finish_reason"] == "done" and events[-1][1]["chars"] == 40
    # the first chunk says the seed, so that a stream stopped before its end can be written again
    random_seed = stream(client, length=10)
    assert random_seed[0][1]["seed"] == random_seed[-1][1]["seed"] and all("seed" not in d for _, d in random_seed[1:-1])


def test_copy_check_reports_each_sample_as_the_cli_does(client, tiny_ckpt):
    from charlm.copycheck import CopyIndex
    from charlm.data import training_text

    index = CopyIndex(training_text(load_model(tiny_ckpt)[2]))
    assert client.get("/v1/model").json()["copy_check"] is True
    body = {"prefix": "分开", "length": 40, "seed": 5, "num_samples": 2, "temperature": 1.5}
    plain = client.post("/v1/generate", json=body).json()
    assert "copies" not in plain  # only when asked for
    got = client.post("/v1/generate", json={**body, "check_copy": True}).json()
    assert got["samples"] == plain["samples"]
    expected = [dataclasses.asdict(index.check(t[len("分开"):].strip("\n"))) for t in got["samples"]]  # what was written
    assert got["copies"] == expected and all(c["longest"] >= 2 for c in expected)
    done = stream(client, **body, check_copy=True)[-1]
    assert done[0] == "done" and done[1]["copies"] == expected
    # a training line as the prefix is the user's, not copied by the model: only the 3 characters written count
    line = client.post("/v1/generate", json={"prefix": "分开的时候我说不分开", "length": 3, "seed": 1, "check_copy": True}).json()
    assert 1 <= line["copies"][0]["longest"] <= 3


def test_copy_check_without_the_training_text_is_422_before_writing(tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1)
    (tmp_path / "corpus.txt").unlink()  # the model was trained elsewhere: its corpus is not on this server
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/v1/model").json()["copy_check"] is False
        for path in ("/v1/generate", "/v1/generate/stream"):
            r = c.post(path, json={"length": 10, "check_copy": True})
            assert r.status_code == 422 and r.json()["error"].startswith("check_copy: the training text is not where the server runs"), r.text
        assert c.post("/v1/generate", json={"length": 10}).status_code == 200  # the rest works
    (tmp_path / "corpus.txt").write_bytes(b"")  # there, but not the training text: said at once too
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/v1/model").json()["copy_check"] is False
        r = c.post("/v1/generate", json={"length": 10, "check_copy": True})
        assert r.status_code == 422 and "the copy check cannot use the training text here" in r.json()["error"], r.text


def test_the_training_text_is_read_once(tiny_ckpt, monkeypatch):
    calls = []
    real = serve.training_text
    monkeypatch.setattr(serve, "training_text", lambda ckpt: calls.append(1) or real(ckpt))
    with serve.running(serve.create_app(tiny_ckpt)) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/v1/model").json()["copy_check"] is True
        for _ in range(2):
            assert "copies" in c.post("/v1/generate", json={"length": 5, "check_copy": True}).json()
    assert len(calls) == 1  # at the start, checked; the index is built from that same text



def test_charlm_serve_builds_the_copy_index_before_the_first_request_asks(tiny_ckpt, monkeypatch):
    built = []
    monkeypatch.setattr(serve, "CopyIndex", lambda texts: built.append(texts) or CopyIndex(texts))
    app = serve.create_app(tiny_ckpt)
    srv = app.state.server
    assert srv.index_in_background() == len(serve.training_text(srv.ckpt))
    for t in threading.enumerate():  # (a small text's may be done already)
        if t.name == "charlm-copy-index":
            t.join(timeout=60)
    assert len(built) == 1 and srv._copy_index is not None  # built, before any request
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        body = c.post("/v1/generate", json={"length": 20, "check_copy": True, "seed": 3}).json()
    assert len(built) == 1 and len(body["copies"]) == 1  # the request used it


def test_the_background_copy_index_may_be_done_before_its_start_returns(tiny_ckpt, monkeypatch):
    """The race CI met: a small text's index built (and its texts let go) before index_in_background() counted them."""
    class Eager(threading.Thread):  # the thread done before start() returns
        def start(self):
            self.run()

    srv = serve.create_app(tiny_ckpt).state.server
    monkeypatch.setattr(serve, "threading", types.SimpleNamespace(Thread=Eager))  # (serve's alone, not the process's)
    assert srv.index_in_background() == len(serve.training_text(srv.ckpt))
    assert srv._copy_index is not None and srv._train_text is None
    assert srv.index_in_background() == 0  # built already: nothing more to start


def test_a_copy_index_that_failed_to_build_in_the_background_is_built_by_the_request(tiny_ckpt, monkeypatch, capsys):
    calls = []

    def flaky(texts):
        calls.append(texts)
        if len(calls) == 1:
            raise MemoryError("no room")
        return CopyIndex(texts)

    monkeypatch.setattr(serve, "CopyIndex", flaky)
    app = serve.create_app(tiny_ckpt)
    app.state.server.index_in_background()
    for t in threading.enumerate():
        if t.name == "charlm-copy-index":
            t.join(timeout=60)
    assert "the copy check's index could not be built (MemoryError: no room)" in capsys.readouterr().err
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/generate", json={"length": 20, "check_copy": True, "seed": 3})
    assert r.status_code == 200 and len(r.json()["copies"]) == 1  # (was a 500: the text had been let go)
    assert len(calls) == 2 and calls[1] == calls[0]

def test_a_training_text_changed_before_or_while_serving(tmp_path):
    from .conftest import LYRIC, train_tiny

    train_tiny(tmp_path, epochs=1)
    corpus = tmp_path / "corpus.txt"
    original = corpus.read_bytes()
    corpus.write_text(LYRIC[::-1] * 40, encoding="utf-8")  # the same characters in another order: a changed text
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/v1/model").json()["copy_check"] is False  # it used to say true, then fail
        r = c.post("/v1/generate", json={"length": 10, "check_copy": True})
        assert r.status_code == 422 and "is no longer the text" in r.json()["error"]
    corpus.write_bytes(original)
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/v1/model").json()["copy_check"] is True
        corpus.write_bytes(b"")  # emptied after the start: the text read and checked then is the one compared against
        body = c.post("/v1/generate", json={"length": 10, "check_copy": True}).json()
        assert len(body["copies"]) == 1 and "copy_check_error" not in body


def test_score_matches_evaluate(client, tiny_ckpt):
    text = "分开的时候我说不分开\n你说我们还会再见\n"
    r = client.post("/v1/score", json={"text": text})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["text"] == text and len(s["surprisal"]) == len(text)
    assert s["surprisal"][0] is None and all(b is not None and b >= 0 for b in s["surprisal"][1:])
    model, vocab, _ = load_model(tiny_ckpt)
    loss, n = evaluate(model, torch.tensor(vocab.encode(text)))
    assert s["scored"] == n == len(text) - 1
    assert s["loss"] == pytest.approx(loss, rel=1e-5)
    assert s["bits_per_character"] == pytest.approx(loss / math.log(2), rel=1e-5)
    assert s["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert sum(s["surprisal"][1:]) / n == pytest.approx(s["bits_per_character"], abs=1e-3)
    # a byte-order mark a client kept from a file is left out, as eval leaves a file's out (it was a 422)
    r = client.post("/v1/score", json={"text": "\ufeff" + text})
    assert r.status_code == 200 and r.json()["text"] == text and r.json()["loss"] == s["loss"], r.text


def test_score_unknown_characters(client):
    r = client.post("/v1/score", json={"text": "分开☃不分开"})
    assert r.status_code == 422 and "☃" in r.json()["error"] and r.json()["error"].startswith("text:")
    s = client.post("/v1/score", json={"text": "分开☃不分开", "unknown": "skip"}).json()
    assert s["skipped"] == 1 and s["surprisal"][2] is None and s["surprisal"][3] is not None
    assert s["outside_vocabulary"] == ["☃"] and s["as_unk"] == 0 and s["scoring"] == "static"
    s = client.post("/v1/score", json={"text": "分开X☃不分开☃Y", "unknown": "skip"}).json()
    assert s["outside_vocabulary"] == ["☃", "X", "Y"]  # most frequent first, then in order of appearance (as eval --json)


def test_score_says_what_a_model_with_unk_read_as_unk(tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True)
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        s = c.post("/v1/score", json={"text": "分开☃不分开☃"}).json()
    assert s["skipped"] == 0 and s["as_unk"] == 2 and s["outside_vocabulary"] == ["☃"] and s["scored"] == 6


def test_api_docs_load_nothing_from_outside(client):
    """/docs works on a machine without internet: its scripts and styles come from the server (/redoc is off: its bundle
    fetched a logo from its CDN)."""
    import re

    assert client.get("/redoc").status_code == 404
    for page in ("/docs",):
        html = client.get(page).text
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), html
        for asset in re.findall(r"(?:src|href)=[\"']([^\"']+\.(?:js|css))", html) or re.findall(r"['\"](/[^'\"]+\.(?:js|css))['\"]", html):
            assert client.get(asset).status_code == 200, asset
    assert "swagger-ui-bundle.js" in client.get("/docs").text


def test_model_info(client):
    info = client.get("/v1/model").json()
    assert info["model_config"]["hidden_size"] == 32 and info["vocab_size"] == info["model_config"]["vocab_size"]
    assert info["train_config"]["epochs"] == 6
    assert len(info["metrics"]) == 6 and info["best"]["val_loss"] is not None
    assert info["limits"]["max_length"] == 2000
    assert info["default_prefix"] == "分开"  # what a request without a prefix starts from (the page fills it in too)


@pytest.mark.parametrize("body, field", [
    ({"temperature": -1}, "temperature"),
    ({"temperature": 0}, "temperature"),
    ({"temperature": 1e-300}, "temperature"),  # float32 logits / 1e-300 overflow: was a 500
    ({"acrostic": "☃", "unknown": "skip"}, "acrostic"),  # nothing left of it: was a plain sample
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"length": 0}, "length"),
    ({"length": 2001}, "length"),
    ({"num_samples": 17}, "num_samples"),
    ({"prefix": "分" * 1001}, "prefix"),
    ({"seed": -2}, "seed"),
    ({"seed": 2**32}, "seed"),  # the CPU's generator would read it as 0: the text of seed 0
    ({"length": "many"}, "length"),
    ({"temp": 0.5}, "temp"),
    ({"prefix": "分开☃"}, "prefix"),
    ({"prefix": "分开", "acrostic": "你我"}, "prefix"),
    ({"acrostic": "你我", "length": 50}, "length"),  # an acrostic's lines end it: the length was ignored
    ({"acrostic": "你我", "lines": 3}, "lines"),
    ({"acrostic": "  ", "lines": 3}, "acrostic"),  # only whitespace: said so first
    ({"lines": 101}, "lines"),  # --max-lines
    ({"prefix": "☃☃", "unknown": "skip"}, "prefix"),  # nothing left of it
])
def test_bad_requests_are_422_naming_the_field(client, body, field):
    for path in ("/v1/generate", "/v1/generate/stream"):
        r = client.post(path, json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"].startswith(field + ":"), r.json()
        assert any(d["loc"][-1] == field for d in r.json()["detail"])


def test_seeds_are_those_that_write_different_texts(client):
    """A torch generator on the CPU reads only a seed's low 32 bits: 2**32 would write seed 0's text, so the seeds end at
    2**32 - 1, and the schema says so exactly (2**63 - 1 was written 9.223372036854776e18, a number the server refused)."""
    spec = client.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]["properties"]["seed"]
    assert spec["maximum"] == 2**32 - 1  # (a float there: exact, as 2**63 - 1 is not)
    texts = [client.post("/v1/generate", json={"prefix": "分开", "length": 12, "temperature": 5, "seed": s}).json()["samples"][0]
             for s in (0, 2**32 - 1)]
    assert texts[0] != texts[1]


def test_prefix_defaults_to_the_runs_first_known_prefix_and_empty_starts_a_line(client):
    """No prefix: the training run's first prefix (分开 here), as `charlm generate` does; an empty one starts a line."""
    r = client.post("/v1/generate", json={"length": 5, "seed": 2})
    assert r.status_code == 200 and r.json()["samples"][0].startswith("分开")
    r = client.post("/v1/generate", json={"prefix": "", "length": 5, "seed": 2})
    assert r.status_code == 200 and len(r.json()["samples"][0]) == 5


def test_unknown_characters_are_named(client):
    r = client.post("/v1/generate", json={"prefix": "分开☃x"})
    assert r.status_code == 422 and "'☃'" in r.json()["error"] and "'x'" in r.json()["error"]
    ok = client.post("/v1/generate", json={"prefix": "分开☃", "unknown": "skip", "length": 3, "seed": 1})
    assert ok.status_code == 200 and ok.json()["samples"][0].startswith("分开")


@pytest.mark.parametrize("raw", ['{"prefix": "分开",', "not json", "[1, 2]", ""])
def test_malformed_json_is_422(client, raw):
    r = client.post("/v1/generate", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]


def test_a_control_character_in_a_json_string_is_named_in_one_clean_phrase(client):
    r = client.post("/v1/score", content=b'{"text": "a\rb"}', headers={"content-type": "application/json"})
    assert r.status_code == 422  # (json's "Invalid control character at" read "... at, at character 11")
    assert r.json()["error"] == "body: malformed JSON (Invalid control character, at character 11)"


@pytest.mark.parametrize("path, raw, field", [
    ("/v1/generate", '{"prefix": "\\ud800", "length": 5}', "prefix"),
    ("/v1/score", '{"text": "分开\\ud800", "unknown": "skip"}', "text"),
])
def test_a_lone_surrogate_is_422_not_a_server_error(client, path, raw, field):
    r = client.post(path, content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text  # the error echoes the input, which could not be encoded: a 500
    assert r.json()["error"].startswith(field + ":") and "\\ud800" in r.text


def test_a_body_sent_as_a_form_is_told_to_be_json(client):
    r = client.post("/v1/generate", data={"prefix": "分开"})  # what `curl -d` sends without a Content-Type
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["error"]
    r = client.post("/v1/generate", json=[1, 2])
    assert r.status_code == 422 and "Content-Type" not in r.json()["error"]


def test_model_info_names_no_folders_of_the_server(client, tiny_ckpt):
    text = client.get("/v1/model").text
    assert str(tiny_ckpt.parent.parent) not in text  # the API may face the network
    assert client.get("/v1/model").json()["checkpoint"] == f"…/{tiny_ckpt.parent.name}/{tiny_ckpt.name}"  # not a relative path
    assert [serve._short(p) for p in ("/tmp/run", "/a/b/c", "run/best", "a/run/best", "")] == [
        "/tmp/run", "…/b/c", "run/best", "…/run/best", ""]  # (/tmp/run was "…/tmp/run": cut where nothing was)


@pytest.mark.parametrize("argv,message", [
    (["--max-prefix", "99999999999999999999"], "invalid server limits: max_prefix: Input should be less than or equal to 1000000"),
    (["--max-text", str(2**64)], "invalid server limits: max_text: Input should be less than or equal to 100000000"),
    (["--threads", "99999999999999999999"], "--threads must be from 1 to 1024, got 99999999999999999999"),
    (["--threads", "0"], "--threads must be from 1 to 1024, got 0"),
])
def test_huge_limits_are_refused_in_a_line(capsys, tiny_ckpt, argv, message):
    """(a traceback of pydantic's SchemaError, "int too big to convert"; "Overflow when unpacking long long")"""
    assert cli.main(["serve", str(tiny_ckpt), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"charlm: error: {message}"


@pytest.mark.parametrize("port", [-1, 65536, 99999])
def test_a_port_out_of_range_is_an_error(capsys, tiny_ckpt, port):
    assert cli.main(["serve", str(tiny_ckpt), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == f"charlm: error: --port must be from 0 to 65535, got {port}"


def test_limits_are_configurable(tiny_ckpt):
    app = serve.create_app(tiny_ckpt, max_prefix=3, max_length=20, max_samples=2)
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.post("/v1/generate", json={"num_samples": 3}).status_code == 422
        assert c.post("/v1/generate", json={"length": 21}).status_code == 422
        assert c.post("/v1/generate", json={"prefix": "不分开了"}).status_code == 422
        # --lines is bounded by characters too: cut at max_length, and it says so.
        r = c.post("/v1/generate", json={"lines": 50, "seed": 1}).json()
        assert r["finish_reason"] == "max_length" and r["chars"] == 20
        spec = c.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]["properties"]["max_line_length"]
        assert spec["default"] == spec["maximum"] == 20  # (its default was 64, past its own maximum)
    with pytest.raises(ValueError, match="max_length"):
        serve.create_app(tiny_ckpt, max_length=0)


def test_an_acrostic_is_held_to_max_lines_as_lines_are(tiny_ckpt):
    with serve.running(serve.create_app(tiny_ckpt, max_lines=3)) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.post("/v1/generate", json={"lines": 4}).status_code == 422
        r = c.post("/v1/generate", json={"acrostic": "分开我你"})  # four lines asked for (was written: 25 of them as well)
        assert r.status_code == 422 and r.json()["error"] == ("acrostic: the acrostic asks for 4 lines (one per character); "
                                                              "this server writes at most 3 (--max-lines)")
        r = c.post("/v1/generate", json={"acrostic": "分 开我", "seed": 1})  # (its space is nobody's head)
        assert r.status_code == 200 and r.json()["samples"][0].count("\n") == 3


def test_a_lines_request_sets_where_a_long_line_is_ended_as_generate_does(client, tiny_run, capsys):
    ask = {"prefix": "分开", "lines": 3, "max_line_length": 4, "seed": 2}
    r = client.post("/v1/generate", json=ask).json()
    lines = r["samples"][0].split("\n")
    assert len(lines) == 4 and lines[-1] == "" and all(len(line) <= 4 for line in lines)  # (the prefix counts on its line)
    assert cli.main(["generate", str(tiny_run), "--prefix", "分开", "--lines", "3", "--max-line-length", "4", "--seed", "2"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == r["samples"][0].rstrip("\n")
    r = client.post("/v1/generate", json={**ask, "max_line_length": 0})
    assert r.status_code == 422 and r.json()["error"].startswith("max_line_length: ")
    r = client.post("/v1/generate", json={"length": 50, "max_line_length": 30})  # no lines to end: it would do nothing
    assert r.status_code == 422 and r.json()["error"].startswith("max_line_length: ")


def test_a_client_that_sends_every_field_at_its_default_is_not_refused(client):
    """A client made from the schema sends all fields: max_line_length 64 without lines, or greedy with temperature 1.0,
    was a 422 "would do nothing" though nothing was asked for."""
    props = client.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    assert {"max_line_length", "temperature", "top_p", "length"} <= defaults.keys()
    for ask in ({**defaults, "seed": 1}, {**defaults, "seed": 1, "greedy": True}, {**defaults, "lines": 2, "length": defaults["length"]}):
        r = client.post("/v1/generate", json=ask)
        assert r.status_code == 200, r.text
    r = client.post("/v1/generate", json={**defaults, "greedy": True, "temperature": 0.5})  # one set to something else still is
    assert r.status_code == 422 and r.json()["error"].startswith("temperature: ")
    r = client.post("/v1/generate", json={**defaults, "greedy": True, "num_samples": 3})  # three copies of one text
    assert r.status_code == 422 and r.json()["error"] == ("num_samples: greedy writes the same text every time, so "
                                                          "num_samples 3 would write it 3 times; give one or the other")


def test_a_sample_that_ends_exactly_at_the_length_cap_is_done_not_cut(tiny_ckpt):
    ask = {"lines": 2, "seed": 3}  # (two lines: each shorter than the cap, which a server's longest line is held to)
    with serve.running(serve.create_app(tiny_ckpt)) as base, httpx.Client(base_url=base, timeout=60) as c:
        whole = c.post("/v1/generate", json=ask).json()
    assert whole["finish_reason"] == "done"
    n = whole["chars"]
    for cap, reason in ((n, "done"), (n - 1, "max_length")):
        with serve.running(serve.create_app(tiny_ckpt, max_length=cap)) as base, httpx.Client(base_url=base, timeout=60) as c:
            r = c.post("/v1/generate", json=ask).json()
        assert r["finish_reason"] == reason and r["chars"] == cap and whole["samples"][0].startswith(r["samples"][0])
    for never in (float("inf"), float("nan")):  # (an endless limit was taken, and /v1/model answered 500)
        with pytest.raises(ValueError, match="time_limit: Input should be a finite number"):
            serve.create_app(tiny_ckpt, time_limit=never)


def test_parallel_requests_equal_sequential(client):
    bodies = [{"prefix": p, "length": 40, "seed": s, "temperature": 1.3, "num_samples": 1 + s % 3}
              for s, p in enumerate(["分开", "不分开", "我", "你说"] * 2)]
    alone = [client.post("/v1/generate", json=b).json()["samples"] for b in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda b: client.post("/v1/generate", json=b).json()["samples"], bodies))
        streamed = list(pool.map(lambda b: stream(client, **b), bodies))
    assert together == alone
    for events, samples in zip(streamed, alone):
        chunks = [d["samples"] for e, d in events if e == "chunk"]
        assert ["".join(c[i] for c in chunks) for i in range(len(samples))] == samples
    assert len({tuple(a) for a in alone}) == len(alone)  # different seeds really differ


@pytest.fixture
def slow_generate(monkeypatch):
    """Make each character take 10 ms, and count the characters the model was asked for."""
    real = serve.generate
    pulled = []

    def slow(*args, **kw):
        for step in real(*args, **kw):
            time.sleep(0.01)
            pulled.append(1)
            yield step

    monkeypatch.setattr(serve, "generate", slow)
    return pulled


@pytest.fixture
def held_generate(monkeypatch):
    """Make each generation wait, before its first step, until the test lets it go (``.set()``): a request holds its
    worker for as long as a test needs, on a loaded machine too (10 ms a character left a window of 0.3 s)."""
    real, gate = serve.generate, threading.Event()

    def held(*args, **kw):
        assert gate.wait(60), "the test never let the generation go"
        yield from real(*args, **kw)

    monkeypatch.setattr(serve, "generate", held)
    yield gate
    gate.set()


def test_time_limit_cuts_and_says_so(tiny_ckpt, slow_generate):
    with serve.running(serve.create_app(tiny_ckpt, time_limit=1.0)) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/generate", json={"length": 2000, "seed": 1}).json()
        assert r["finish_reason"] == "time_limit" and 0 < r["chars"] < 2000
        assert r["samples"][0].startswith("分开") and len(r["samples"][0]) == 2 + r["chars"]
        events = stream(c, length=2000, seed=1)
        assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "time_limit"


def test_client_disconnect_stops_generation(tiny_ckpt, slow_generate):
    with serve.running(serve.create_app(tiny_ckpt)) as base, httpx.Client(base_url=base, timeout=60) as c:
        with c.stream("POST", "/v1/generate/stream", json={"length": 2000, "seed": 1}) as r:
            next(r.iter_lines())  # the first event is there: leave
        deadline = time.monotonic() + 10
        while (h := c.get("/healthz").json())["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert h["active"] == 0 and h["disconnected"] == 1
        made = len(slow_generate)
        time.sleep(0.3)
        assert len(slow_generate) == made < 500  # stopped long before 2,000 characters, and stays stopped


def test_requests_beyond_the_workers_wait_their_turn(tiny_ckpt, held_generate):
    app = serve.create_app(tiny_ckpt, workers=1)
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        body = {"length": 30, "seed": 5}
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(c.post, "/v1/generate", json=body)
            second = pool.submit(c.post, "/v1/generate", json=body)
            deadline = time.monotonic() + 30
            # one generating (held) while the other waits: watched for, as both requests take a moment to arrive
            while not ((h := c.get("/healthz").json())["active"] == 1 and h["waiting"] == 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert h["active"] == 1 and h["waiting"] == 1
            held_generate.set()
            assert first.result().json()["samples"] == second.result().json()["samples"]
        assert c.get("/healthz").json() | {"served": 0} == {"status": "ok", "active": 0, "waiting": 0, "served": 0, "disconnected": 0}


def test_small_load_has_no_errors(url):
    spec = importlib.util.spec_from_file_location("load_test", Path(__file__).parents[1] / "bench" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    res = asyncio.run(load_test.run_load(url, clients=8, requests=64, length=20, timeout=120,
                                        prefixes=["分开", "不分开", "你说", "我们"]))
    assert res["errors"] == 0, res["first_errors"]
    assert res["requests"] == 64 and all(res["kinds"].values())


def test_cli_serve_errors_are_one_line(tmp_path, tiny_ckpt, capsys):
    assert cli.main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("charlm: error:") and "no such checkpoint" in err and err.count("\n") == 1
    taken = serve.bind("127.0.0.1", 0)
    try:
        assert cli.main(["serve", str(tiny_ckpt), "--port", str(taken.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert "cannot listen on 127.0.0.1" in err and err.count("\n") == 1
    finally:
        taken.close()


def test_busy_beyond_max_waiting_is_a_503_and_scoring_counts_as_work(tiny_ckpt, held_generate):
    with serve.running(serve.create_app(tiny_ckpt, workers=1, max_waiting=0)) as base, httpx.Client(base_url=base, timeout=60) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/v1/generate", json={"length": 100, "seed": 5})  # held until the three are refused
            deadline = time.monotonic() + 30
            while c.get("/healthz").json()["active"] != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            for path, body in (("/v1/generate", {"length": 5}), ("/v1/generate/stream", {"length": 5}), ("/v1/score", {"text": "分开的"})):
                r = c.post(path, json=body)
                assert r.status_code == 503 and r.headers["retry-after"] == "1" and "every worker is busy" in r.json()["error"]
            held_generate.set()
            assert first.result().json()["finish_reason"] == "done"
        h = c.get("/healthz").json()
        assert h["disconnected"] == 0 and h["active"] == h["waiting"] == 0  # refused is not disconnected
        assert c.post("/v1/score", json={"text": "分开的"}).status_code == 200
        assert c.get("/healthz").json()["served"] == h["served"] + 1  # a scoring is a model call like a generation


@pytest.mark.parametrize("body, field", [
    ('{"prefix": "分开", "temperature": NaN}', "temperature"),
    ('{"prefix": "分开", "top_p": -Infinity}', "top_p"),
    ('{"prefix": "分开", "temperature": 1e400}', "temperature"),
    ('{"text": NaN}', "text"),
])
def test_nan_and_infinity_are_a_422_naming_the_field(client, body, field):
    path = "/v1/score" if '"text"' in body else "/v1/generate"
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith(f"{field}: ")
    assert client.get("/healthz").status_code == 200  # and the connection is still good


def test_the_longest_texts_the_limits_allow_fit_in_the_body_limit(client):
    """A client escaping every character (ensure_ascii) of max_text characters outside the BMP is not told 413."""
    limits = client.get("/v1/model").json()["limits"]
    text = "分开" + "\U00020000" * (limits["max_text"] - 2)  # 12 bytes each, escaped: \ud840\udc00
    body = json.dumps({"text": text, "unknown": "skip"})
    assert len(body) > (limits["max_text"] - 2) * 12
    r = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["skipped"] == limits["max_text"] - 2


def test_an_acrostic_needs_characters_the_model_holds_even_with_unk(tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True)
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/generate", json={"acrostic": "龙我"})
        assert r.status_code == 422 and r.json()["error"].startswith("acrostic: ") and "'龙'" in r.json()["error"]
        r = c.post("/v1/generate", json={"acrostic": "龙我", "unknown": "skip", "seed": 1})
        assert r.status_code == 200 and r.json()["samples"][0].startswith("我")


def test_bodies_and_echoes_are_bounded(client):
    limits = client.get("/v1/model").json()["limits"]
    big = {"text": "分" * limits["max_body"]}
    r = client.post("/v1/score", json=big)
    assert r.status_code == 413 and "larger than this server takes" in r.json()["error"]

    def chunked():  # no Content-Length: counted as it comes
        yield b'{"text": "'
        for _ in range(64):
            yield b"a" * 10_000
        yield b'"}'

    r = client.post("/v1/score", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/score", json={"text": "分" * (limits["max_text"] + 1)})  # within the body limit: a 422 quoting a little
    assert r.status_code == 422 and len(r.content) < 2000 and "20,001 characters" in r.text
    deep = '{"prefix": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = client.post("/v1/generate", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith("body: malformed JSON")
    many = json.dumps({f"k{i}": 0 for i in range(20_000)})  # 20,000 faults in one body: named up to 20, the rest counted
    r = client.post("/v1/generate", content=many, headers={"content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 5000 and len(r.json()["detail"]) == 20
    assert r.json()["error"].startswith("k0: Extra inputs are not permitted; k1: ") and r.json()["error"].endswith("; and 19,980 more")


def test_fields_sent_as_a_query_string_are_refused_not_dropped(client):
    """POST /v1/generate?length=5 would have written 100 characters from a random seed: the body alone is read, so a
    query string on a POST is a 422 naming it; a GET's (a cache-buster) is let be."""
    for path, body in (("/v1/generate", {}), ("/v1/generate/stream", {}), ("/v1/score", {"text": "分开"})):
        r = client.post(path + "?length=5&seed=3", json=body)
        assert r.status_code == 422 and r.json()["error"].startswith("query: this server reads the fields from the JSON body")
        assert r.json()["detail"][0]["loc"] == ["query"]
    assert client.get("/v1/model?v=2").status_code == 200


def test_every_http_error_has_the_error_field_and_head_and_caching_work(client):
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}  # as ErrorResponse: detail is the 422's, a list
    r = client.get("/v1/generate")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"} and r.headers["allow"] == "POST"
    for path in ("/healthz", "/", "/v1/model", "/static/app.js"):  # an uptime check's HEAD: the GET's answer without its body
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    for path in ("/", "/static/app.js"):  # the page is checked on each load: a page open across an upgrade gets the new script
        page = client.get(path)
        assert page.headers["cache-control"] == "no-cache"
    assert client.get("/static/app.js", headers={"if-none-match": page.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("expect", [b"100-continue", b"100-Continue"])  # (a header's value has no case)
def test_a_body_too_large_for_a_client_waiting_to_send_it_is_refused_before_it_is_sent(url, expect):
    """Content-Length over the limit with Expect: 100-continue: a 413 at once, not a "100 Continue" inviting the upload."""
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\nExpect: " + expect + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # (the server closes the connection after it)
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and "larger than this server takes" in answer


@pytest.mark.parametrize("length, sent, status, says", [
    (40, b'{"text": ', 408, "body: the request's body did not arrive within 0.5 seconds of its headers"),
    (50_000_000, b"x" * 100_000, 413, "larger than this server takes"),  # too large, and then stalled: still answered
])
def test_a_client_that_stalls_while_sending_its_body_is_answered_and_let_go(url, monkeypatch, length, sent, status, says):
    """A body that stops part-way no longer holds its connection open for ever (the server waited without end)."""
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr(serve._BodyLimit, "BODY_SECONDS", 0.5)
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(length).encode() + b"\r\n\r\n" + sent)
        answer = b""
        while chunk := sock.recv(4096):  # (the server closes the connection after it)
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}") and says in json.loads(body)["error"]


def test_a_request_whose_client_left_while_it_waited_gives_its_place_up(tiny_ckpt, monkeypatch):
    """Scorings whose client hung up while they waited for the one worker are given up when their turn comes and counted
    as disconnected, instead of each taking the worker's time for nobody (a queue of 64 abandoned scorings held real
    users off for seconds); a generation's turn ends at its first step, as before."""
    import socket
    from urllib.parse import urlsplit

    release, calls = threading.Event(), []
    real = serve.surprisal
    monkeypatch.setattr(serve, "surprisal", lambda *a: calls.append(1) or (release.wait(30) and real(*a)))  # held until released
    app = serve.create_app(tiny_ckpt, workers=1)
    srv = app.state.server
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c, ThreadPoolExecutor(1) as pool:
        held = pool.submit(c.post, "/v1/score", json={"text": "分开的时候"})
        deadline = time.monotonic() + 20
        while srv.active < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        host, port = urlsplit(base).hostname, urlsplit(base).port
        for n, (path, body) in enumerate((("/v1/score", rb'{"text": "\u5206\u5f00"}'), ("/v1/score", rb'{"text": "\u5206\u5f00\u7684"}'),
                                          ("/v1/generate", b'{"length": 5}'))):
            with socket.create_connection((host, port), timeout=10) as sock:  # sent whole, then the client hangs up
                sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                while srv.waiting < n + 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
        assert (srv.active, srv.waiting) == (1, 3)
        release.set()
        assert held.result().status_code == 200
        while (srv.waiting or srv.disconnected < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        health = c.get("/healthz").json()
        assert (health["active"], health["waiting"], health["disconnected"], health["served"]) == (0, 0, 3, 2), health
        assert len(calls) == 1  # the abandoned scorings never ran
        assert c.post("/v1/score", json={"text": "分开"}).status_code == 200  # and the worker is there for the next


def test_a_server_told_to_stop_ends_its_generations_and_takes_no_more(tiny_ckpt):
    app = serve.create_app(tiny_ckpt, workers=1, max_length=300_000)
    srv = app.state.server
    with serve.running(app) as base, httpx.Client(base_url=base, timeout=60) as c, ThreadPoolExecutor(1) as pool:
        with c.stream("POST", "/v1/generate/stream", json={"length": 300_000, "seed": 1}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("event: chunk")  # it holds the one worker
            waiting = pool.submit(c.post, "/v1/generate", json={"length": 5})
            deadline = time.monotonic() + 30
            while c.get("/healthz").json()["waiting"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            srv.stop()  # as the server's shutdown does first, on SIGTERM or Ctrl-C
            events = sse("\n".join(lines).split("\n\n", 1)[1])  # (after the first chunk's data)
        assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "shutdown" and events[-1][1]["chars"] < 300_000
        r = waiting.result()  # it waited for the worker: answered, not run
        assert r.status_code == 503 and r.json()["error"] == "the server is shutting down"
        r = c.post("/v1/generate", json={"length": 5})
        assert r.status_code == 503 and r.json()["error"] == "the server is shutting down"
        assert c.post("/v1/score", json={"text": "分开"}).status_code == 503
        assert c.get("/healthz").json() | {"served": 0} == {"status": "ok", "active": 0, "waiting": 0, "served": 0, "disconnected": 0}
    fresh = serve.create_app(tiny_ckpt)
    for _ in range(2):  # served, shut down by uvicorn (which stops the app first), and served again
        with serve.running(fresh) as base:
            assert not fresh.state.server.stopping.is_set()
            assert httpx.post(base + "/v1/generate", json={"length": 5}, timeout=60).status_code == 200
        assert fresh.state.server.stopping.is_set()


def test_a_server_error_is_json_too(tiny_ckpt, monkeypatch):
    app = serve.create_app(tiny_ckpt)
    monkeypatch.setattr(app.state.server, "copy_check_possible", lambda: 1 / 0)  # a bug in /v1/model
    with serve.running(app) as base:
        r = httpx.get(base + "/v1/model", timeout=60)
    assert r.status_code == 500 and r.json() == {"error": "internal error (ZeroDivisionError); the server's log has the details"}


def test_types_are_strict_and_lines_and_length_do_not_mix(client):
    for bad in ({"length": "10"}, {"length": True}, {"greedy": "yes"}, {"check_copy": 1}):
        r = client.post("/v1/generate", json={"prefix": "分开", **bad})
        assert r.status_code == 422 and r.json()["error"].startswith(f"{next(iter(bad))}: ")
    assert client.post("/v1/generate", json={"prefix": "分开", "temperature": 1, "length": 3}).status_code == 200  # an integer is a number
    r = client.post("/v1/generate", json={"prefix": "分开", "lines": 2, "length": 5})
    assert r.status_code == 422 and "lines: length and lines do not go together" in r.json()["error"]


def test_the_default_length_keeps_to_the_servers_limit_and_prefix_line_ends_are_read_as_newlines(tiny_ckpt):
    with serve.running(serve.create_app(tiny_ckpt, max_length=20)) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/generate", json={"seed": 1})
        assert r.status_code == 200 and r.json()["chars"] == 20
        one = c.post("/v1/generate", json={"prefix": "分开\r\n", "seed": 1, "length": 5}).json()["samples"]
        assert one == c.post("/v1/generate", json={"prefix": "分开\n", "seed": 1, "length": 5}).json()["samples"]


def test_a_json_request_whose_client_left_ends_without_an_error(tiny_ckpt):
    """The answer nobody reads still passes its own schema (finish_reason disconnected), not a 500 in the log."""
    app = serve.create_app(tiny_ckpt)
    body = json.dumps({"length": 2000, "seed": 1}).encode()
    sent, asked = [], []

    async def receive():
        asked.append(1)
        if len(asked) == 1:
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/generate", "raw_path": b"/v1/generate", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert answer["finish_reason"] == "disconnected" and answer["chars"] < 2000


def test_copy_reports_keep_their_null_share_and_samples_are_bounded(client, tiny_ckpt):
    r = client.post("/v1/generate", json={"prefix": "分开", "length": 3, "check_copy": True, "seed": 1}).json()
    assert r["copies"][0]["ngram_share"] is None and "copy_check_error" not in r  # a 3-character sample has no 8-gram
    with pytest.raises(ValueError, match="max_samples"):
        serve.create_app(tiny_ckpt, max_samples=5000)  # beyond what a generation takes


def test_echoes_of_raw_bodies_and_long_keys_are_bounded_and_greedy_takes_no_temperature(client):
    r = client.post("/v1/score", content=b"x" * 200_000, headers={"content-type": "text/plain"})
    assert r.status_code == 422 and len(r.content) < 3000
    r = client.post("/v1/score", content=b"y" * 500, headers={"content-type": "text/plain"})
    assert r.json()["detail"][0]["input"] == "y" * 200 + "… (500 bytes)"  # cut, and it says so
    r = client.post("/v1/score", json={"text": "分开", "k" * 100_000: 1})
    assert r.status_code == 422 and len(r.content) < 3000
    r = client.post("/v1/generate", json={"greedy": True, "temperature": 0.5})
    assert r.status_code == 422 and r.json()["error"].startswith("temperature: greedy takes the most likely character")


def test_an_acrostic_of_spaces_is_said_to_be_one(client):
    r = client.post("/v1/generate", json={"acrostic": " \u3000 "})
    assert r.status_code == 422 and r.json()["error"] == "acrostic: the acrostic is only whitespace or punctuation: give the characters its lines start with"


def test_characters_skipped_are_named_as_the_cli_notes_them(client):
    """With unknown: skip, what was dropped is in the answer (charlm generate prints a note); without skips, nothing."""
    r = client.post("/v1/generate", json={"prefix": "分\u200bΩ开", "style_prefix": "Ω你", "unknown": "skip", "seed": 1, "length": 4})
    assert r.status_code == 200 and r.json()["samples"][0].startswith("分开")
    assert r.json()["skipped"] == {"prefix": ["\u200b", "Ω"], "style_prefix": ["Ω"]}
    r = client.post("/v1/generate", json={"acrostic": "分 Ω", "unknown": "skip", "seed": 1})
    assert r.status_code == 200 and r.json()["skipped"] == {"acrostic": ["Ω"]}  # its space is nobody's head: not a skip
    with client.stream("POST", "/v1/generate/stream", json={"prefix": "分Ω", "unknown": "skip", "seed": 1, "length": 4}) as s:
        done = [line for line in s.iter_lines() if line.startswith("data:")][-1]
    assert json.loads(done[5:])["skipped"] == {"prefix": ["Ω"]}
    assert client.post("/v1/generate", json={"prefix": "分开", "seed": 1, "length": 4}).json()["skipped"] == {}


def test_a_model_with_nowhere_to_start_says_so_for_a_text_and_for_an_acrostic(tmp_path):
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import corpus_from_text
    from charlm.train import Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"), epochs=1, batch_size=2, num_steps=8, device="cpu", prefixes=())
    corpus = corpus_from_text("分开的时候我说不分开" * 30, cfg)
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=16, copy_window=0), cfg, corpus, log=None).fit()
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/generate", json={"prefix": "", "length": 5})
        assert r.status_code == 422 and r.json()["error"].startswith("prefix: nothing to start the text after")
        r = c.post("/v1/generate", json={"acrostic": "分开"})
        assert r.status_code == 422 and r.json()["error"] == ("acrostic: nothing to start an acrostic's first line after: the model has "
                                                              "neither a newline nor a space; give style_prefix")


def test_unknown_characters_are_refused_with_the_servers_own_hint(client):
    """The hint says how a request skips them (the page swaps this very text for its own words), not the CLI's flag."""
    hint = '(remove them, or send "unknown": "skip" to drop them)'
    for path, body, field in (("/v1/generate", {"prefix": "分☃"}, "prefix"), ("/v1/generate", {"style_prefix": "☃"}, "style_prefix"),
                              ("/v1/generate", {"acrostic": "☃"}, "acrostic"), ("/v1/score", {"text": "分开☃"}, "text")):
        r = client.post(path, json=body)
        assert r.status_code == 422 and r.json()["error"].startswith(f"{field}: ") and r.json()["error"].endswith(hint), r.json()
        assert "--unknown" not in r.json()["error"]


def test_faults_up_to_the_cap_are_all_named_and_only_more_are_counted(client):
    for n, tail in ((20, None), (21, "; and 1 more")):
        r = client.post("/v1/generate", json={f"k{i}": 0 for i in range(n)})
        error = r.json()["error"]
        assert r.status_code == 422 and len(r.json()["detail"]) == 20
        assert error.endswith(tail) if tail else ("more" not in error and error.endswith("k19: Extra inputs are not permitted")), error


def test_a_stopping_server_answers_new_requests_at_once_and_gives_back_the_waiting_ones_places(tiny_ckpt):
    """After stop(), a new request is a 503 at once, not queued behind a busy worker; one that waited gives its worker's
    place back when it is refused (else a server served again after a shutdown would have fewer workers, or none)."""
    import anyio

    srv = serve.create_app(tiny_ckpt, workers=1).state.server
    results = []

    async def request():
        try:
            async with srv.slot(object()):
                results.append("ran")
        except serve._Busy as e:
            results.append(str(e))

    async def main():
        limiter, holder = srv.limiter(), object()
        await limiter.acquire_on_behalf_of(holder)  # the one worker is busy
        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            with anyio.fail_after(5):
                while srv.waiting < 1:
                    await anyio.sleep(0.01)
            srv.stop()
            with anyio.fail_after(2), pytest.raises(serve._Busy, match="^the server is shutting down$"):
                async with srv.slot(object()):
                    pass
            limiter.release_on_behalf_of(holder)
        return limiter.borrowed_tokens

    assert anyio.run(main) == 0 and results == ["the server is shutting down"]


def test_forwarded_for_headers_are_not_believed_and_windows_does_not_share_a_port(tiny_ckpt, monkeypatch):
    import os
    import socket

    app = serve.create_app(tiny_ckpt)
    assert serve._uvicorn(app, "warning").config.proxy_headers is False  # any local user could forge an address in the log
    sock = serve.bind("127.0.0.1", 0)
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)  # a restart does not wait out TIME_WAIT
    with monkeypatch.context() as m:
        m.setattr(os, "name", "nt")
        sock = serve.bind("127.0.0.1", 0)
    with sock:
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)  # on Windows it lets a second server take the port


def test_score_returns_the_text_in_the_form_it_scored_with_one_surprisal_per_code_point(tmp_path):
    """An é sent as one code point, to a model whose corpus writes e + U+0301: the answer's text is the form scored (12
    code points for 11 sent), and surprisal lines up with it, not with the text sent."""
    from .conftest import train_tiny

    (tmp_path / "corpus.txt").write_text("the cafe\u0301 is open\nthe cat is in the cafe\u0301\n" * 40, encoding="utf-8")
    train_tiny(tmp_path, epochs=1, prefixes=("the",))
    with serve.running(serve.create_app(tmp_path / "run")) as base, httpx.Client(base_url=base, timeout=60) as c:
        sent = "the caf\u00e9 is"
        r = c.post("/v1/score", json={"text": sent})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["text"] == "the cafe\u0301 is" and len(sent) == 11
    assert got["characters"] == len(got["text"]) == len(got["surprisal"]) == 12
    assert got["surprisal"][8] is not None  # the accent itself, predicted after the e
