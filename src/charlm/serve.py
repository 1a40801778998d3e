"""An HTTP API and a lyrics-writing page over one trained model: ``charlm serve CKPT``.

The model is loaded once and shared read-only.  Every request gets its own hidden state
(inside :func:`charlm.sampling.generate`) and its own ``torch.Generator``, so requests
never share state and the same seed gives the same text as ``charlm generate --seed``.
The model runs in worker threads, a few characters at a time, so the event loop stays free
to answer other requests and to notice a client that has gone away; at most ``workers``
generations run at once and the others wait in line.

    POST /v1/generate         samples as JSON
    POST /v1/generate/stream  the same as server-sent events: ``chunk`` events, then ``done``
    POST /v1/score            perplexity, bits per character and per-character surprisal
    GET  /v1/model            configuration, vocabulary size and training metrics
    GET  /healthz             liveness
    GET  /                    the page (static/), served by the app itself, no CDN
    GET  /docs                OpenAPI documentation
"""

import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import anyio
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .checkpoint import finite, load_model
from .config import MAX_TEMPERATURE, MIN_TEMPERATURE, SAMPLE_SEED_MAX, SampleConfig, to_dict
from .copycheck import SAID_FROM, CopyIndex
from .data import normalize, pretraining_texts, training_text
from .errors import CharlmError
from .sampling import InputError, acrostic_heads, check_known, check_options, default_prefix, generate, make_generator, read_inputs, vocab_form
from .train import pick_device, surprisal

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_ERRORS = 20  # a 422 names at most this many of a request's faults, and counts the rest
SKIP_HINT = 'remove them, or send "unknown": "skip" to drop them'  # how a request skips unknown characters


class Limits(BaseModel):
    """What one request may ask for; each is a ``charlm serve`` flag of the same name."""

    max_prefix: int = Field(1000, ge=1, le=1_000_000, description="characters in a prefix, style prefix or acrostic")
    max_length: int = Field(2000, ge=1, description="characters generated per sample (also caps --lines)")
    max_lines: int = Field(100, ge=1, description="lines per sample (lines, or an acrostic's characters)")
    max_samples: int = Field(16, ge=1, le=4096, description="samples per request")
    max_text: int = Field(20000, ge=2, le=100_000_000, description="characters of a text to score")
    time_limit: float = Field(30.0, gt=0, allow_inf_nan=False, description="seconds a generation may run before it is cut")
    max_waiting: int = Field(64, ge=0, description="requests waiting for a worker; more are answered 503 at once")

    @computed_field(description="bytes in a request body; a larger one is answered 413")
    @property
    def max_body(self) -> int:
        """Bytes in a request body: room for the longest texts the fields allow, written as JSON escapes (\\uXXXX pairs)."""
        return 64 * 1024 + 12 * (self.max_text + 3 * self.max_prefix)


def _request_models(lim: Limits):
    """Request bodies whose Field bounds are this app's limits, so that FastAPI's 422 names the field."""
    # strict: "10" is not 10, true is not 1, "yes" is not true (an integer is still a float)
    strict = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    class GenerateRequest(BaseModel):
        """What to write: the same settings as ``charlm generate``."""

        model_config = strict
        prefix: str | None = Field(None, max_length=lim.max_prefix,
                                   description="text the sample starts with (default: the first of the training run's prefixes "
                                               "the model knows, 分开 for the lyrics; else the start of a line)")
        length: int = Field(min(100, lim.max_length), ge=1, le=lim.max_length, description="characters to generate after the prefix")
        lines: int = Field(0, ge=0, le=lim.max_lines, description="stop after this many lines instead of a length (not with "
                                                                  "length); 0 = off")
        max_line_length: int = Field(min(64, lim.max_length), ge=1, le=lim.max_length,
                                     description="with lines or an acrostic (else, if not the default, a 422): a line is ended at a space "
                                                 "the model writes from 3/4 of this on, and at this length where none "
                                                 "came, so that a sample always finishes (64 suits lyrics; prose wants more)")
        temperature: float = Field(1.0, ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE, description="> 1 more surprising, < 1 more conservative")
        top_k: int | None = Field(None, ge=1, description="sample among the k most likely characters")
        top_p: float = Field(1.0, gt=0, le=1, description="nucleus: the smallest set whose probability reaches p")
        greedy: bool = Field(False, description="always take the most likely character")
        seed: int = Field(-1, ge=-1, le=SAMPLE_SEED_MAX, description="the same seed gives the same text; -1 = random (the seed drawn is returned)")
        num_samples: int = Field(1, ge=1, le=lim.max_samples, description="independent samples, drawn as one batch")
        style_prefix: str = Field("", max_length=lim.max_prefix, description="read first to set the mood, not returned")
        acrostic: str = Field("", max_length=lim.max_prefix, description="藏头: one line per character (spaces and punctuation left out), each starting with it "
                                                                          "(not with prefix, length or lines)")
        unknown: Literal["error", "skip"] = Field("error", description="characters outside the vocabulary: 422, or drop them "
                                                                         "(a model trained with --unk reads those of prefix and style_prefix as <unk> either way; an acrostic's must be its own)")
        check_copy: bool = Field(False, description="also report, per sample, the longest span found verbatim in the training "
                                                    "text and the share of its 8-grams seen there (as charlm generate --check-copy; "
                                                    "needs the training text where the server runs, see /v1/model copy_check)")

    class ScoreRequest(BaseModel):
        """A text to read through the model, as one stream."""

        model_config = strict
        text: str = Field(..., min_length=1, max_length=lim.max_text, description="the text to score")
        unknown: Literal["error", "skip"] = Field("error", description="characters outside the vocabulary: 422, or skip them")

    return GenerateRequest, ScoreRequest


# What the endpoints answer, for /docs: the JSON is exactly these fields (the optional ones only when there is something to say).


class CopyReportOut(BaseModel):
    longest: int = Field(description="characters in the longest span of what the model wrote found verbatim in the training text")
    span: str = Field(description="that span")
    ngram_share: float | None = Field(description="share of the sample's n-grams seen in the training text (null if shorter than n)")
    n: int = Field(description="the n of the n-grams (8)")


class GenerateResponse(BaseModel):
    samples: list[str] = Field(description="one text per sample, starting with the prefix (an acrostic's start with its first line)")
    finish_reason: Literal["done", "time_limit", "max_length", "disconnected", "shutdown"] = Field(
        description="why it stopped: done, time_limit (the server's --time-limit), max_length (lines or an acrostic reached "
                    "the server's --max-length characters), disconnected (the client went away: nobody reads this answer), "
                    "shutdown (the server was stopped while it wrote)")
    seed: int = Field(description="the seed used: send it again for the same text")
    chars: int = Field(description="characters generated per sample, the prefix not counted (with several samples, the longest's)")
    elapsed_s: float = Field(description="seconds spent generating, time waiting for a worker not counted")
    time_limit_s: float = Field(description="the server's --time-limit, in seconds")
    skipped: dict[str, list[str]] = Field(description="with unknown: skip, the characters dropped from prefix, style_prefix "
                                                      "and acrostic as outside the vocabulary, by field (a field with none left out)")
    copies: list[CopyReportOut] | None = Field(None, description="with check_copy: one report per sample")
    copy_check_note: str | None = Field(None, description="with check_copy, a pre-training text (--init-from) that could not be "
                                                          "read, so the check covers the fine-tuning text only")


class ScoreResponse(BaseModel):
    text: str = Field(description="the text as scored: line endings as \\n (as spaces, for a model trained so), and in the "
                                  "Unicode normal form (NFC or NFD) in which the vocabulary holds the most of it: an accented "
                                  "letter sent as two code points may come back as one. Index surprisal by this text, not the one sent")
    characters: int = Field(description="characters in text (Unicode code points, as Python counts: JavaScript's length counts "
                                        "UTF-16 units, two for an emoji; Array.from(text) gives the code points)")
    scored: int = Field(description="characters with a surprisal: all known ones but the first")
    skipped: int = Field(description="characters outside the vocabulary, skipped (with unknown: skip): the figures cover the rest")
    as_unk: int = Field(description="characters outside the vocabulary read and scored as <unk> (a model trained with --unk): "
                                    "easier to predict than the characters themselves, so compare only with models of this vocabulary")
    outside_vocabulary: list[str] = Field(description="the distinct characters outside the vocabulary, most frequent first "
                                             "(ties in order of appearance), as charlm eval --json lists them")
    scoring: Literal["static"] = Field(description="static: read once as one stream, the model unchanged by the text (a copy "
                                                   "attention looks back over the text already read), as charlm eval without --dynamic")
    loss: float = Field(description="mean cross-entropy in nats per character")
    bits_per_character: float = Field(description="mean surprisal in bits per character (loss / ln 2), as charlm eval --json names it")
    perplexity: float | None = Field(description="2 ** bits_per_character (null if too large to write)")
    surprisal: list[float | None] = Field(description="bits per character of text, one per code point of the returned text; "
                                                      "null for the first and for skipped ones")


class Health(BaseModel):
    status: Literal["ok"] = Field(description="always ok: the server answers")
    active: int = Field(description="model calls (generations, scorings) running")
    waiting: int = Field(description="model calls waiting for a worker")
    served: int = Field(description="model calls ended since the start")
    disconnected: int = Field(description="generations stopped, and scorings given up when their turn came, because their "
                                          "client went away")


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())  # its field model_config_ (pydantic before 2.10 warned of "model_")

    checkpoint: str = Field(description="the checkpoint folder's last two path parts (…/run/best)")
    model_config_: dict = Field(alias="model_config", description="the model's configuration, as in the checkpoint (cell, sizes, ...)")
    train_config: dict = Field(description="the training configuration; data, out and init_from as their last two path parts")
    vocab_size: int = Field(description="characters in the vocabulary (with <unk> if the model has it)")
    has_newline: bool = Field(description="whether the model writes line breaks (lines and acrostics need them)")
    language: Literal["zh", "en"] = Field(description="zh when most of the vocabulary is CJK ideographs: the page's language")
    default_prefix: str = Field(description="where a generation without a prefix starts")
    copy_check: bool = Field(description="whether check_copy works here: the training text was found, readable and unchanged at the start")
    parameters: int = Field(description="the model's parameter count")
    device: str = Field(description="where the model runs (cpu, cuda:0)")
    metrics: list[dict] = Field(description="one object per validation of the training, as metrics.jsonl")
    best: dict | None = Field(description="the metrics of the validation with the lowest loss (null without a held-out split)")
    limits: Limits = Field(description="what one request may ask for: this server's flags of the same names")


class ErrorResponse(BaseModel):
    error: str = Field(description="one line naming the field (or body) and what was wrong")
    detail: list[dict] | None = Field(None, description="the same per field, in FastAPI's shape (422 only)")


BODY_SECONDS = 30.0  # how long a request's body may take to arrive after its headers (_BodyLimit)

ERRORS = {
    408: {"model": ErrorResponse, "description": f"the body did not arrive whole within {BODY_SECONDS:g} seconds of the request's headers"},
    413: {"model": ErrorResponse, "description": "the body is larger than the server takes (`limits.max_body` of /v1/model)"},
    422: {"model": ErrorResponse, "description": "a bad request: `error` names the field"},
    503: {"model": ErrorResponse, "description": "every worker is busy and `limits.max_waiting` requests wait already "
                                                 "(try again: Retry-After: 1), or the server is shutting down"},
}


class _Busy(Exception):
    """Every worker is busy and ``max_waiting`` requests wait already, or the server is stopping: a 503."""

    def __init__(self, waiting: int, stopping: bool = False):
        queue = f"{waiting} request{'s' if waiting != 1 else ''} wait already" if waiting else "this server keeps no queue (--max-waiting 0)"
        super().__init__("the server is shutting down" if stopping else f"busy: every worker is busy and {queue}; try again shortly")


class _Gone(Exception):
    """The client went away while its request waited for a worker: given up when its turn came, its place handed on."""


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(finite(data), ensure_ascii=False)}\n\n"


class _Generation:
    """One request's sampling: its own random stream, hidden state, deadline and character budget.

    :meth:`next_chunk` runs in a worker thread and returns what was written in about
    ``interval`` seconds, so the caller can stream it and check on the client in between.
    """

    def __init__(self, model, vocab, req, time_limit: float, max_chars: int | None, default: str = "", newlines: str = "keep",
                 stopping: threading.Event | None = None):
        self.seed = req.seed if req.seed >= 0 else secrets.randbelow(2**31)  # short, and exact in JavaScript
        cfg = SampleConfig(length=req.length, lines=req.lines, max_line_length=req.max_line_length, greedy=req.greedy, temperature=req.temperature,
                           top_k=req.top_k, top_p=req.top_p, num_samples=req.num_samples, seed=self.seed)
        # The checks of `charlm generate`, on the fields sent with other than their default: a client that sends every
        # field (one made from the schema does) is not refused for a max_line_length or temperature left as it was.
        fields = type(req).model_fields
        given = {k for k in req.model_fields_set if getattr(req, k) != fields[k].default}
        check_options(cfg, given, acrostic=req.acrostic)
        inputs = read_inputs(vocab, req.prefix, req.style_prefix, req.acrostic, unknown=req.unknown, default=default,
                             newlines=newlines, hint=SKIP_HINT)
        self.skipped = inputs.skipped  # dropped, but not in silence (as `charlm generate` notes)
        self.lines = req.lines or len(acrostic_heads(inputs.acrostic))  # lines asked for: an acrostic's, one per head
        device = model.decoder.weight.device
        # The same call as `charlm generate`, so the same seed gives the same text.
        self._steps = generate(model, vocab, inputs.prefix, cfg, style_prefix=inputs.style_prefix, acrostic=inputs.acrostic,
                               generator=make_generator(cfg.seed, device))
        self._prefix_pending = bool(inputs.prefix)  # (never with an acrostic)
        self.shown_prefix = inputs.prefix  # the samples start with it
        self.n = cfg.num_samples
        self.time_limit, self.max_chars = time_limit, max_chars
        self.chars = 0  # generated per sample, the prefix not counted
        self.finish_reason: str | None = None
        self.started: float | None = None  # the first step, not the request: time waiting for a worker is free
        self.cancelled = threading.Event()
        self.stopping = stopping or threading.Event()  # the server's: set when it shuts down

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def next_chunk(self, interval: float = 0.05) -> list[str] | None:
        """The next characters of each sample, or None once finished (``finish_reason`` says why)."""
        if self.finish_reason is not None:
            return None
        if self.started is None:
            self.started = time.monotonic()
        out = [""] * self.n
        got = False
        until = time.monotonic() + interval
        try:
            while True:
                if self.cancelled.is_set():
                    self.finish(reason="disconnected")
                    break
                if self.stopping.is_set():
                    self.finish(reason="shutdown")
                    break
                if self.max_chars is not None and self.chars >= self.max_chars:  # (a text complete at the cap is done)
                    self.finish(reason="done" if next(self._steps, None) is None else "max_length")
                    break
                if self.elapsed > self.time_limit:
                    self.finish(reason="time_limit")
                    break
                step = next(self._steps, None)
                if step is None:
                    self.finish(reason="done")
                    break
                if self._prefix_pending:
                    self._prefix_pending = False
                else:
                    self.chars += 1
                out = [a + b for a, b in zip(out, step)]
                got = True
                if time.monotonic() >= until:
                    break
        except BaseException:
            self.finish(reason="error")
            raise
        return out if got else None

    def finish(self, reason: str) -> None:
        """Stop here: the generator is closed, which ends its hold on the model."""
        if self.finish_reason is None:
            self.finish_reason = reason
        self._steps.close()

    def summary(self) -> dict:
        return {"finish_reason": self.finish_reason, "seed": self.seed, "chars": self.chars,
                "elapsed_s": round(self.elapsed, 4), "time_limit_s": self.time_limit, "skipped": self.skipped}


class _Server:
    """The loaded model and what the endpoints share: limits, counters, the worker limiter."""

    def __init__(self, checkpoint_path, limits: Limits, device: str, workers: int):
        self.device = pick_device(device)
        self.model, self.vocab, self.ckpt = load_model(checkpoint_path, self.device)
        self.model.requires_grad_(False)
        self.default_prefix = default_prefix(self.vocab, self.ckpt.train_config.prefixes)  # a request without a prefix
        self.limits = limits
        self.workers = workers
        self.active = 0  # generations and scorings running
        self.waiting = 0  # generations and scorings waiting for a worker
        self.served = 0
        self.disconnected = 0
        self.stopping = threading.Event()  # set by stop(): generations end, and nothing new starts
        self._loop = self._limiter = self._threads = None
        self._copy_lock = threading.Lock()
        self._copy_index: CopyIndex | None = None
        self._copy_note = ""  # a pre-training text left out of the index, and why
        self._train_text: str | None = None  # read at the start, kept for the index (built on the first check_copy)
        self._pre = None  # pretraining_texts(): any pre-training text for the index, and notes
        self._copy_problem = self._training_text_problem()  # so /v1/model says whether check_copy works

    def _training_text_problem(self) -> str | None:
        """Why the copy check cannot work here (the training text missing, unreadable, or changed since), or None."""
        data = self.ckpt.train_config.data
        if data and not Path(data).exists():
            return f"the training text is not where the server runs ({_short(data)})"
        try:
            self._train_text = training_text(self.ckpt)
        except CharlmError as e:
            return f"the copy check cannot use the training text here: {e}"
        return None

    def copy_check_possible(self) -> bool:
        """Whether the training text was there, readable and unchanged when the server started (the bundled lyrics always are)."""
        return self._copy_problem is None

    def index_in_background(self) -> int:
        """Start building the copy check's index in a thread, so that the first request asking for a copy check (the
        page asks whenever it can) does not wait for it; the characters it indexes, 0 if none.  Any pre-training text
        is read here, in the calling thread (reading notes its warnings, which are no thread's own)."""
        if not self.copy_check_possible():
            return 0
        with self._copy_lock:
            if self._copy_index is not None or (text := self._train_text) is None:
                return 0  # built already
            if self._pre is None:
                self._pre = pretraining_texts(self.ckpt)
            # counted before the thread starts: the build lets the texts go as soon as it has them indexed
            count = len(text) + sum(len(t) for _, t in self._pre[0])
        threading.Thread(target=self._build_quietly, name="charlm-copy-index", daemon=True).start()
        return count

    def _build_quietly(self) -> None:
        try:
            self.copy_index()
        except Exception as e:  # (out of memory, say): a request asking for a copy check builds it again, and answers for it
            print(f"charlm: the copy check's index could not be built ({e.__class__.__name__}: {e}); a request asking for "
                  f"a copy check tries again", file=sys.stderr, flush=True)

    def copy_index(self) -> CopyIndex:
        """The copy check's index, built on first use (in a thread: seconds for millions of characters) from the training
        text read and checked at the start (a request for a copy check gets its 422 before, when that failed);
        ``charlm serve`` starts building it at once (:meth:`index_in_background`)."""
        with self._copy_lock:
            if self._copy_index is None:
                if self._pre is None:
                    self._pre = pretraining_texts(self.ckpt)  # a fine-tuned model may repeat its pre-training text too
                pre, notes = self._pre
                self._copy_index = CopyIndex([self._train_text] + [t for _, t in pre])
                self._copy_note = "; ".join(notes)
                self._train_text = self._pre = None  # the copies in the index are the ones kept
            return self._copy_index

    async def copies(self, req, gen: _Generation, texts: list[str]) -> dict:
        """``{"copies": [report per sample]}`` when the request asked for it, else nothing: of what the model wrote, not the prefix."""
        if not req.check_copy:
            return {}
        skip = len(gen.shown_prefix)
        reports = await anyio.to_thread.run_sync(lambda: [self.copy_index().check(t[skip:].strip("\n")) for t in texts])
        return {"copies": [dataclasses.asdict(r) for r in reports], **({"copy_check_note": self._copy_note} if self._copy_note else {})}

    def limiter(self) -> anyio.CapacityLimiter:
        """At most ``workers`` generations or scorings run at once; the rest wait in line, first come first served.

        A generation keeps its place until it ends (bounded by the time limit), so a stream,
        once started, flows at full speed instead of sharing turns with every waiting request.
        One limiter per event loop, since an anyio limiter belongs to the loop that made it.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._limiter = loop, anyio.CapacityLimiter(self.workers)
            # the threads that hold a worker's place: as many as the places (anyio's default pool stops at 40)
            self._threads = anyio.CapacityLimiter(self.workers)
        return self._limiter

    @contextlib.asynccontextmanager
    async def slot(self, owner, request: Request | None = None):
        """A worker's place for ``owner`` (a generation or a scoring) while the block runs, once one is free.

        If none is free and ``max_waiting`` requests wait already, :class:`_Busy` (a 503) at once; if the client of
        ``request`` went away while it waited, :class:`_Gone` when its turn comes, the place handed on at once, so that
        no abandoned request takes a worker's time.  (Its wait is not cancelled: anyio's limiter before 4.10 could lose
        a place to a waiter cancelled as it was given one.)
        """
        limiter = self.limiter()
        if self.stopping.is_set():
            raise _Busy(self.waiting, stopping=True)
        if limiter.available_tokens < 1 and self.waiting >= self.limits.max_waiting:
            raise _Busy(self.waiting)
        self.waiting += 1
        try:
            await limiter.acquire_on_behalf_of(owner)  # on behalf of the owner: a stream is consumed by another task
        finally:
            self.waiting -= 1
        if self.stopping.is_set():  # it stopped while this one waited: the queue is not run first
            limiter.release_on_behalf_of(owner)
            raise _Busy(self.waiting, stopping=True)
        if request is not None and await request.is_disconnected():
            limiter.release_on_behalf_of(owner)
            raise _Gone
        self.active += 1
        try:
            yield
        finally:
            limiter.release_on_behalf_of(owner)
            self.active -= 1
            self.served += 1

    def stop(self) -> None:
        """Shutting down: running generations end at their next step (``finish_reason`` shutdown), waiting and new
        requests are answered 503, so that the server exits in moments instead of working through its queue."""
        self.stopping.set()

    async def in_worker(self, request: Request, fn, *args):
        """``fn(*args)`` in a thread, once a worker is free (given up if the client of ``request`` leaves first)."""
        owner = object()
        try:
            async with self.slot(owner, request):
                return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)
        except _Gone:
            self.disconnected += 1
            raise

    def start(self, req) -> _Generation:
        """A generation for ``req``; nothing runs until its first chunk is asked for.

        A request that wants a copy check gets its 422 now if the training text is not on this machine,
        not after the text was written (the index itself is built when the first such text is done).
        """
        # --length is bounded by its Field; --lines and --acrostic are bounded here, by characters.
        cap = self.limits.max_length if (req.lines or req.acrostic) else None
        gen = _Generation(self.model, self.vocab, req, self.limits.time_limit, cap, self.default_prefix, self.ckpt.train_config.newlines,
                          self.stopping)
        if req.acrostic and gen.lines > self.limits.max_lines:  # (req.lines is bounded by its Field)
            raise InputError("acrostic", f"the acrostic asks for {gen.lines} lines (one per character); this server writes "
                                         f"at most {self.limits.max_lines} (--max-lines)")
        if req.check_copy and self._copy_problem:
            raise InputError("check_copy", self._copy_problem)
        return gen

    async def chunks(self, gen: _Generation, request: Request, interval: float):
        """The chunks of ``gen`` as they are made, once a worker is free; stops early when the client goes away."""
        try:
            async with self.slot(gen):  # (a client gone is seen below: the answer nobody reads keeps its schema)
                while True:
                    if await request.is_disconnected():
                        gen.cancelled.set()
                    # The place in line is held already: its thread never waits (one per place).
                    chunk = await anyio.to_thread.run_sync(gen.next_chunk, interval, limiter=self._threads)
                    if chunk is None:
                        break
                    yield chunk
        except _Busy:
            gen.finish(reason="busy")  # refused before it started: not a disconnection
            raise
        finally:
            # Also reached when the response is cancelled mid-stream: stop at the next step.
            gen.cancelled.set()
            if gen.finish_reason is None:
                gen.finish_reason = "disconnected"
            if gen.finish_reason == "disconnected":
                self.disconnected += 1


def create_app(
    checkpoint_path,
    *,
    max_prefix: int = 1000,
    max_length: int = 2000,
    max_lines: int = 100,
    max_samples: int = 16,
    max_text: int = 20000,
    time_limit: float = 30.0,
    max_waiting: int = 64,
    device: str = "cpu",
    workers: int | None = None,
) -> FastAPI:
    """The app over the checkpoint at ``checkpoint_path`` (a checkpoint or run folder), loaded once.

    A missing or damaged checkpoint is a :class:`CharlmError`; bad limits a ``ValueError``.
    """
    try:
        limits = Limits(max_prefix=max_prefix, max_length=max_length, max_lines=max_lines,
                        max_samples=max_samples, max_text=max_text, time_limit=time_limit, max_waiting=max_waiting)
    except ValidationError as e:
        raise ValueError("invalid server limits: " + "; ".join(_describe(d) for d in e.errors())) from None
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    srv = _Server(checkpoint_path, limits, device, workers or os.cpu_count() or 1)
    GenerateRequest, ScoreRequest = _request_models(limits)

    app = FastAPIOffline(  # FastAPI whose /docs serves its scripts from here, not from a CDN
        dependencies=[Depends(_no_query)],
        redoc_url=None,  # ReDoc's bundle fetches its logo from its CDN all the same: one documentation page, offline
        title="charlm",
        version=__version__,
        summary="A character-level language model: write from a prefix, stream it, score any text.",
    )
    app.state.server = srv
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body)
    app.add_middleware(_HeadAsGet)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        detail = [{**d, "loc": _echo(list(d.get("loc", ())), room=60), **({"input": _echo(d["input"])} if "input" in d else {})}
                  for d in errors[:MAX_ERRORS]]  # 30,000 unknown keys are not answered 30,000 times
        detail = _encodable(jsonable_encoder(detail))  # a lone surrogate could not be sent
        error = "; ".join(_describe(d) for d in detail)
        if len(errors) > MAX_ERRORS:
            error += f"; and {len(errors) - MAX_ERRORS:,} more"
        if any(d.get("loc") in (["body"], ("body",)) for d in detail) and "json" not in request.headers.get("content-type", ""):
            error += " (send the body as JSON, with the header Content-Type: application/json)"
        return JSONResponse({"error": error, "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's words for a body
            # json.loads gave up on it without a JSONDecodeError
            error = "body: malformed JSON (it cannot be parsed: not UTF-8, nested too deeply, or a number too long)"
            return JSONResponse({"error": error, "detail": [{"loc": ["body"], "msg": error, "type": "json_invalid"}]}, status_code=422)
        if exc.status_code < 400:  # no body (a 304)
            return await http_exception_handler(request, exc)
        headers = getattr(exc, "headers", None)  # a 405's Allow
        # (``detail`` is the 422's list per field: an error of the whole request, a 404 or 405, has ``error`` alone)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception):  # a bug: the log has its traceback, the client a JSON error still
        return JSONResponse({"error": f"internal error ({exc.__class__.__name__}); the server's log has the details"}, status_code=500)

    @app.exception_handler(_Busy)
    async def _busy(request: Request, exc: _Busy):
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(_Gone)
    async def _gone(request: Request, exc: _Gone):  # nobody reads it: nginx's code for a client that closed its request
        return JSONResponse({"error": "the client went away before a worker was free"}, status_code=499)

    @app.exception_handler(InputError)
    async def _invalid_input(request: Request, exc: InputError):
        detail = [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]
        return JSONResponse({"error": f"{exc.field}: {exc}", "detail": detail}, status_code=422)

    @app.get("/healthz", tags=["service"], response_model=Health)
    async def healthz() -> dict:
        """Liveness, and how many model calls (generations and scorings) are running, waiting for a worker, and done."""
        return {"status": "ok", "active": srv.active, "waiting": srv.waiting, "served": srv.served,
                "disconnected": srv.disconnected}

    @app.get("/v1/model", tags=["model"], response_model=ModelInfo, response_model_by_alias=True)
    async def model_info() -> dict:
        """The checkpoint's model and training configuration, vocabulary size, training metrics and this server's limits."""
        ck = srv.ckpt
        best = min((m for m in ck.metrics if m.get("val_loss") is not None), key=lambda m: m["val_loss"], default=None)
        return finite({
            "checkpoint": _short(ck.path),  # names, not this machine's folders: the API may face the network
            "model_config": to_dict(ck.model_config),
            "train_config": {**to_dict(ck.train_config), **{k: _short(getattr(ck.train_config, k)) for k in ("data", "out", "init_from")}},
            "vocab_size": len(srv.vocab),
            "has_newline": "\n" in srv.vocab,
            "language": _language(srv.vocab),
            "default_prefix": srv.default_prefix,
            "copy_check": srv.copy_check_possible(),
            "parameters": sum(p.numel() for p in srv.model.parameters()),
            "device": str(srv.device),
            "metrics": ck.metrics,
            "best": best,
            "limits": limits.model_dump(),
        })

    @app.post("/v1/generate", tags=["generate"], response_model=GenerateResponse, response_model_exclude_unset=True, responses=ERRORS)
    async def generate_json(req: GenerateRequest, request: Request) -> dict:
        """Write ``num_samples`` texts from ``prefix``; ``finish_reason`` says why they stopped (done, time_limit, max_length, disconnected, shutdown).

        With ``check_copy``, ``copies`` holds a copy report per sample: ``longest`` and ``span``, the longest
        piece found verbatim in the training text, and ``ngram_share``, the share of its ``n``-grams seen there.
        """
        gen = srv.start(req)
        texts = [""] * gen.n
        async for chunk in srv.chunks(gen, request, interval=0.25):
            texts = [a + b for a, b in zip(texts, chunk)]
        return {"samples": texts, **gen.summary(), **await srv.copies(req, gen, texts)}

    @app.post(
        "/v1/generate/stream",
        tags=["generate"],
        response_class=StreamingResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                         "description": "`chunk` events with data `{\"samples\": [text per sample]}` (the first also with "
                                        "`seed`, so that a stream stopped early can be written again), then one `done` event "
                                        "with the fields of /v1/generate's answer but `samples` (`finish_reason` may also be "
                                        "`disconnected`); a failure after the 200 is an `error` event with `error`."}},
    )
    async def generate_stream(req: GenerateRequest, request: Request):
        """The same as /v1/generate, as server-sent events while it is written."""
        gen = srv.start(req)
        chunks = srv.chunks(gen, request, interval=0.05)
        # The first chunk (the prefix, or an error about it) before the 200 goes out.
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None

        async def events():
            texts = [""] * gen.n
            try:
                if first is not None:
                    texts = [a + b for a, b in zip(texts, first)]
                    yield _sse("chunk", {"samples": first, "seed": gen.seed})
                async for chunk in chunks:
                    texts = [a + b for a, b in zip(texts, chunk)]
                    yield _sse("chunk", {"samples": chunk})
                yield _sse("done", {**gen.summary(), **await srv.copies(req, gen, texts)})
            except Exception as e:  # pragma: no cover - a bug, reported in-band since the 200 is gone
                yield _sse("error", {"error": f"{e.__class__.__name__}: {e}"})
            finally:
                await chunks.aclose()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/score", tags=["model"], response_model=ScoreResponse, responses=ERRORS)
    async def score(req: ScoreRequest, request: Request) -> dict:
        """Perplexity and bits per character of ``text`` read as one stream, and each character's surprisal in bits.

        ``surprisal[i]`` belongs to ``text[i]``, the i-th code point of the text as scored and returned as ``text``
        (line endings as the model was trained, and in the Unicode form the vocabulary holds); it is null for the first character, which nothing predicts, and for
        characters skipped as unknown.
        """
        # as charlm eval reads it: a byte-order mark a client kept from a file is no character of the text
        text = vocab_form(srv.vocab, normalize(req.text.removeprefix("\ufeff"), srv.ckpt.train_config.newlines))
        if req.unknown == "error":
            check_known(srv.vocab, text, "text", hint=SKIP_HINT)
        known = [i for i, c in enumerate(text) if srv.vocab.unk or c in srv.vocab]
        outside = collections.Counter(c for c in text if c not in srv.vocab)
        if len(known) < 2:
            raise InputError("text", "needs at least two characters the model knows")
        ids = srv.vocab.encode("".join(text[i] for i in known))
        bits = await srv.in_worker(request, surprisal, srv.model, ids)
        per_char: list[float | None] = [None] * len(text)
        for pos, b in zip(known[1:], bits.tolist()):
            per_char[pos] = round(b, 4)
        mean_bits = float(bits.mean())
        return finite({
            "text": text,
            "characters": len(text),
            "scored": len(bits),
            "skipped": len(text) - len(known),
            "as_unk": sum(outside.values()) if srv.vocab.unk else 0,
            "outside_vocabulary": [c for c, _ in outside.most_common()],  # as eval's
            "scoring": "static",
            "loss": mean_bits * math.log(2),
            "bits_per_character": mean_bits,
            "perplexity": 2.0 ** mean_bits if mean_bits < 1000 else float("inf"),
            "surprisal": per_char,
        })

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    app.mount("/static", _Static(directory=STATIC), name="static")
    return app


def _language(vocab) -> str:
    """``zh`` when most of the vocabulary's characters are CJK ideographs, else ``en``: the page's words follow it."""
    chars = [c for c in vocab.itos if len(c) == 1 and not c.isspace()]
    cjk = sum("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\U00020000" <= c <= "\U0003134f" for c in chars)
    return "zh" if chars and 2 * cjk >= len(chars) else "en"


def _short(path) -> str:
    """The last two parts of a path, after ``…/`` where there were more (``…/run/best``, ``…/corpora/lyrics.txt``: not
    read as a relative path); empty stays empty."""
    if not path:
        return ""
    path = Path(path)
    if len(path.parts) - bool(path.anchor) <= 2:  # all of it (/tmp/run: its root is not a part to cut)
        return path.as_posix()
    return "…/" + "/".join(path.parts[-2:])


def _echo(value, room: int = 200, depth: int = 4):
    """A request's bad value as a 422 may quote it: long strings and lists cut short, deep nesting elided, NaN and infinities as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN: json.dumps would fail on it
    if isinstance(value, (bytes, bytearray)):  # a body that was not sent as JSON
        shown = bytes(value[: 4 * room]).decode("utf-8", "replace")
        return shown[:room] + (f"… ({len(value):,} bytes)" if len(value) > 4 * room or len(shown) > room else "")
    if isinstance(value, str) and len(value) > room:
        return value[:room] + f"… ({len(value):,} characters)"
    if isinstance(value, (dict, list, tuple)) and depth == 0:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:room]: _echo(v, room, depth - 1) for k, v in items[:20]}
        return out | ({"…": f"{len(items):,} keys"} if len(items) > 20 else {})
    if isinstance(value, (list, tuple)):
        return [_echo(v, room, depth - 1) for v in value[:20]] + ([f"… ({len(value):,} items)"] if len(value) > 20 else [])
    return value


def _no_query(request: Request) -> None:
    """A request that sends its fields as a query string (POST /v1/generate?length=5) is refused: only the JSON body is
    read, and the fields would be dropped without a word.  (A GET's query string, a cache-buster, is let be.)"""
    if request.method == "POST" and request.url.query:
        raise RequestValidationError([{"loc": ("query",), "input": request.url.query, "type": "value_error",
                                       "msg": "this server reads the fields from the JSON body, not from the query string: send them as JSON"}])


class _HeadAsGet:
    """ASGI middleware: HEAD is answered as GET, whose body the server leaves out (uvicorn reads the method from its
    own copy of the request), so that an uptime check's HEAD /healthz is a 200, not a 405."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class _Static(StaticFiles):
    """The page's files, checked with the server on each load (by ETag: a 304 when unchanged), so that a page
    kept open across an upgrade of charlm gets the new script."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


class _BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app reads any of it, and one that
    has not arrived whole :attr:`BODY_SECONDS` after its headers, 408 (a client that stalls does not hold a connection
    open for ever).

    The body (small, by this limit) is read here and handed on whole; after it, the app's
    ``receive`` is the server's, so a client going away is still seen.
    """

    BODY_SECONDS = BODY_SECONDS

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # a client that waits for "100 Continue" first is answered without it, and sends nothing
            waits = dict(scope["headers"]).get(b"expect", b"").lower() == b"100-continue"
            return await self._refuse(scope, receive, send, more=not waits)
        chunks, size, more = [], 0, True
        with anyio.move_on_after(self.BODY_SECONDS) as waited:
            while more and size <= self.max_bytes:
                message = await receive()
                if message["type"] != "http.request":  # the client left
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
        if waited.cancelled_caught:
            error = f"body: the request's body did not arrive within {self.BODY_SECONDS:g} seconds of its headers"
            return await JSONResponse({"error": error}, status_code=408, headers={"Connection": "close"})(scope, receive, send)
        if size > self.max_bytes:
            return await self._refuse(scope, receive, send, more=more)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    DRAIN = 32 << 20  # bytes of a refused body read and dropped, so that the client, still sending, gets the answer

    async def _refuse(self, scope, receive, send, more: bool):
        drained = 0
        with anyio.move_on_after(self.BODY_SECONDS):  # (a client that stalls meanwhile is answered all the same)
            while more and drained < self.DRAIN:  # a connection closed on unread data is reset, and the 413 lost with it
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                more = message.get("more_body", False)
        error = f"body: the request is larger than this server takes ({self.max_bytes:,} bytes; see /v1/model limits)"
        await JSONResponse({"error": error}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _encodable(obj):
    """``obj`` with every string made encodable as UTF-8 (a lone surrogate such as \\ud800 written out as an escape)."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(obj, dict):
        return {_encodable(k): _encodable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encodable(v) for v in obj]
    return obj


def _describe(d: dict) -> str:
    """``temperature: Input should be greater than 0`` from one pydantic error."""
    if d.get("type") == "json_invalid":
        # (json's own words, cut before its position: "Invalid control character at" was "... at, at character 12")
        said = re.sub(r"\s+at$", "", str(d.get("ctx", {}).get("error", "cannot be parsed")))
        return f"body: malformed JSON ({said}, at character {d['loc'][-1]})"
    loc = [str(p) for p in d.get("loc", ()) if p != "body"]
    return f"{'.'.join(loc) or 'body'}: {d.get('msg', 'invalid')}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error (the port is taken, the host is not ours)."""
    if not 0 <= port <= 65535:
        raise CharlmError(f"--port must be from 0 to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CharlmError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":  # (on Windows it would let a second server take a port in use, as socket.create_server knows)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise CharlmError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn(app: FastAPI, log_level: str):
    """A uvicorn server for ``app`` that, when told to stop, first stops the app's generations (:meth:`_Server.stop`):
    it exits in moments, not after its queue has run.  Forwarded-for headers are not believed: on a shared machine
    any local user could write a false address into the log."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            app.state.server.stopping.clear()  # an app served again, after a shutdown, takes work again
            await super().startup(sockets)

        async def shutdown(self, sockets=None):
            app.state.server.stop()
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, log_level=log_level, lifespan="off", proxy_headers=False, timeout_graceful_shutdown=10))


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a background thread while the block runs; yields its base URL (port 0 = any free port)."""
    sock = bind(host, port)
    server = _uvicorn(app, "warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        sock.close()
        raise RuntimeError("the server did not start")
    try:
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(checkpoint_path, host: str = "127.0.0.1", port: int = 8000, threads: int = 1, log_level: str = "info", **app_kw) -> int:
    """Load the model, bind ``host:port`` and serve until interrupted (``charlm serve``)."""
    if not 1 <= threads <= 1024:
        raise CharlmError(f"--threads must be from 1 to 1024, got {threads}")
    app = create_app(checkpoint_path, **app_kw)
    sock = bind(host, port)
    # Requests run side by side in worker threads; one intra-op thread each keeps them from fighting over cores.
    torch.set_num_threads(threads)
    url = _url(sock)
    srv: _Server = app.state.server
    print(f"charlm: serving {srv.ckpt.path} on {url}  (page: {url}/  API docs: {url}/docs)", flush=True)
    if host not in LOOPBACK:
        print(f"charlm: warning: listening on {host}, reachable from other machines; there is no authentication", flush=True)
    if (size := srv.index_in_background()) >= SAID_FROM:
        print(f"charlm: indexing the {size:,} characters it was trained on for the copy check, in the background", flush=True)
    server = _uvicorn(app, log_level)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
