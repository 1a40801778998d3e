"""The command line: ``charlm train``, ``charlm generate``, ``charlm eval``.

Flags are made from the config dataclasses, so ``--hidden-size`` is ``hidden_size`` in the
config and in the checkpoint.  Bad input ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import re
import sys
import types
import typing
import unicodedata
import warnings
from pathlib import Path

from . import __version__
from .config import ModelConfig, SampleConfig, TrainConfig, field_names, to_dict
from .errors import CharlmError, CharlmWarning
from .presets import DEFAULT_PRESET, PRESETS, check_requires, get_preset, owns_its_data

# Flags that may change on --resume without changing what the run computes.
RESUMABLE_OVERRIDES = {"epochs", "device", "out", "sample_every", "early_stop", "sample_length", "sample_greedy", "prefixes",
                       "cuda_graph", "max_minutes", "eval_every"}


# Other names users reach for first.
ALIASES = {"data": ("--corpus",)}


def _flag(field: str) -> str:
    """A config field as its command-line flag: top_k is --top-k."""
    return "--" + field.replace("_", "-")


def _flag_type(f: dataclasses.Field):
    t = f.type if not isinstance(f.type, str) else eval(f.type, {"tuple": tuple})  # noqa: S307 - our own annotations
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def _shown(value) -> str:
    """A default as it would be typed: ``分开 不分开`` for a tuple, ``lstm`` for a string, ``""`` for an empty one."""
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return '""' if value == "" else str(value)


def _path(value: str) -> str:
    """A path given on the command line: an empty one (an unset shell variable, as in --resume "$RUN") is an error, not
    the default it would stand for (a config's "" is the bundled lyrics, or no --init-from)."""
    if not value:
        raise argparse.ArgumentTypeError("is empty: give a path")
    return value


PATH_FIELDS = {"data", "out", "init_from"}
OWN_DATA_DEFAULTS = {"out": "runs/ and the file's name without its suffix", "prefixes": "none, each sample starting a line (a word, with --newlines space)"}


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: set[str] = frozenset(), preset: str | None = None) -> None:
    """One ``--field-name`` flag per dataclass field, defaulting to None so that only given flags override.

    With ``preset`` the help shows the value that preset gives where it sets one (the value a
    run without ``--preset`` gets), beside the built-in default.
    """
    group = parser.add_argument_group(cls.__name__)
    values = get_preset(preset) if preset else {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        flags = [_flag(f.name), *ALIASES.get(f.name, ())]
        t = _flag_type(f)
        default = f"default: {f.metadata.get('default_text', _shown(f.default))}"
        if f.name in values and values[f.name] != f.default:
            default = f"default: {_shown(values[f.name])} from the {preset} preset; built in: {_shown(f.default)}"
        if preset and f.name in OWN_DATA_DEFAULTS and owns_its_data(preset):  # (what train does with your own text)
            default += f"; with your own --data: {OWN_DATA_DEFAULTS[f.name]}"
        kw = {"dest": f.name, "default": None, "help": f"{f.metadata.get('help', '')} ({default})"}
        if t is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif t is tuple:
            group.add_argument(*flags, nargs="+", **kw)
        else:
            group.add_argument(*flags, type=_path if f.name in PATH_FIELDS else t, choices=f.metadata.get("choices"), **kw)


def _as_flags(message: str) -> str:
    """A config check's message (``top_k must be >= 1``, written for Python callers) with the fields it names as the
    flags the user gave (``--top-k must be >= 1``): the one it starts with and, before any ``: `` (after which come
    values and advice), those shown with a value or compared (``min_lr (1) must not be above lr (0.01)``)."""

    flagged = {f.name for cls in (ModelConfig, TrainConfig, SampleConfig) for f in dataclasses.fields(cls)
               if f.metadata.get("cli") is not False}

    lead = re.match(r"([a-z][a-z_]*)(?= must | needs | works | > | \(|:)", message)
    if not lead or lead.group(1) not in flagged:
        return message
    rest = message[lead.end():]
    if rest.startswith(":"):  # "data: '...' is not valid UTF-8": what follows is the user's value
        return _flag(lead.group(1)) + rest
    head, colon, tail = rest.partition(": ")
    head = _flag(lead.group(1)) + re.sub(r"(?<![\w-])([a-z][a-z_]*)(?= \([-0-9.]| == )|(?<== )([a-z][a-z_]*)\b",
                  lambda m: _flag(m.group(m.lastindex)) if m.group(m.lastindex) in flagged else m.group(0), head)
    return head + colon + tail


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def given(args: argparse.Namespace, cls) -> dict:
    return {k: v for k, v in vars(args).items() if k in field_names(cls) and v is not None}


def build_parser(preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    """The command line; ``train --help`` shows the values of ``preset`` beside the built-in defaults."""
    p = _Parser(prog="charlm", description="Character-level LSTM language models: train, generate, evaluate, "
                                                                "look inside (inspect) and serve.")
    p.add_argument("--version", action="version", version=f"charlm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (default: the bundled Jay Chou lyrics)",
                       description=f"Train a character-level language model. A preset sets every value ({DEFAULT_PRESET} "
                                   "unless --preset names another); any flag overrides it. With --init-from, the model's "
                                   "shape (cell, sizes, layers, tied weights, copy window) is the pre-trained checkpoint's, "
                                   "whatever the defaults below say.")
    t.add_argument("--preset", default=None, help=f"named settings: {', '.join(PRESETS)} (default: {DEFAULT_PRESET})")
    t.add_argument("--resume", type=_path, default=None, metavar="DIR", help="continue a run exactly from its checkpoint (a run folder or a checkpoint folder)")
    t.add_argument("--overwrite", action="store_true", help="train into an --out folder that already holds a run, replacing its checkpoints")
    t.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others before the job ends with an error (default: 300)")
    add_config_flags(t, ModelConfig, preset=preset)
    add_config_flags(t, TrainConfig, preset=preset)

    g = sub.add_parser("generate", help="write text from a prefix", description="Generate text from a trained model; characters stream as they are made.")
    g.add_argument("checkpoint", type=_path, help="checkpoint folder or run folder (its best/ checkpoint, or last/ before it has one)")
    g.add_argument("--prefix", default=None, help="text the sample starts with, \\n standing for a line break (default: the first "
                                                   "of the training run's --prefixes the model knows, 分开 for the lyrics; else the "
                                                   "start of a line)")
    g.add_argument("--style-prefix", default="", help="text read first to set the mood, not printed (\\n stands for a line break)")
    g.add_argument("--acrostic", help="an acrostic (藏头): one line per character, each starting with it; spaces and punctuation are left out (not with --length or --lines)")
    g.add_argument("--unknown", choices=("error", "skip"), default="error", help="characters outside the vocabulary: error (exit 2) or skip them; a model trained with --unk reads those of "
                                                                       "a prefix or style prefix as <unk> either way, and says so (an acrostic's must be its own)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    g.add_argument("--check-copy", action="store_true", help="report on stderr the longest span of what each sample wrote (the prefix not counted) found verbatim in the training text "
                        "(and, for a model fine-tuned with --init-from, in its pre-training text), and the share of its 8-grams seen there")
    add_config_flags(g, SampleConfig)

    e = sub.add_parser("eval", help="perplexity and bits per character of a text", description="Score a text: perplexity and bits per character, read as one stream.")
    e.add_argument("checkpoint", type=_path, help="checkpoint folder or run folder (its best/ checkpoint, or last/ before it has one)")
    e.add_argument("file", nargs="?", type=_path, help="text file (or folder of .txt files) to score, - for standard input "
                                           "(default: the held-out part of the model's own training text)")
    e.add_argument("--encoding", help="text encoding of FILE (default: utf-8, and for a file that is not, the encoding the "
                                      "model's training text was read in)")
    e.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    e.add_argument("--dynamic", type=float, default=0.0, metavar="LR",
                   help="adaptive scoring (dynamic evaluation): after scoring each chunk of 64 characters, one SGD step of this "
                        "learning rate on it, its gradient norm clipped at 1; the checkpoint is not changed (default: 0, static)")
    e.add_argument("--bigram", action="store_true",
                   help="also score FILE with a bigram count model of the training text (which characters follow which), for scale")
    e.add_argument("--check-copy", action="store_true",
                   help="FILE holds samples (split at blank lines or '--- sample N ---'): report each one's longest span found "
                        "verbatim in the training text (on stderr; in the report with --json)")
    e.add_argument("--unknown", choices=["skip", "error"], default="skip",
                   help="characters outside the vocabulary: skip (score the rest, and say so) or error (default: skip); "
                        "a model trained with --unk reads them as <unk> either way")
    e.add_argument("--each-line", action="store_true",
                   help="score each line by itself, from a fresh state after a line break, with the line break that ends it: "
                        "a row per non-blank line (to rank candidate lines), and the figures over them all")
    e.add_argument("--json", action="store_true", help="print the report as one JSON object")

    s = sub.add_parser("serve", help="an HTTP API and a writing page (lyrics, for the default model) over a model",
                       description="Serve a model over HTTP: a page for writing at / (in Chinese for a model of Chinese text), the API at /v1, its documentation at /docs.")
    s.add_argument("checkpoint", type=_path, help="checkpoint folder or run folder (its best/ checkpoint, or last/ before it has one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    s.add_argument("--max-prefix", type=int, default=1000, help="longest prefix, style prefix or acrostic, in characters (default: 1000)")
    s.add_argument("--max-length", type=int, default=2000, help="most characters generated per sample (default: 2000)")
    s.add_argument("--max-lines", type=int, default=100, help="most lines per sample, as lines or an acrostic's characters (default: 100)")
    s.add_argument("--max-samples", type=int, default=16, help="most samples per request (default: 16)")
    s.add_argument("--max-text", type=int, default=20000, help="longest text to score, in characters (default: 20000)")
    s.add_argument("--time-limit", type=float, default=30.0, help="seconds a generation may run before it is cut (default: 30)")
    s.add_argument("--workers", type=int, default=None, help="model calls run at once, the rest wait (default: CPU count)")
    s.add_argument("--max-waiting", type=int, default=64,
                   help="requests that may wait for a worker; more are answered 503 at once (default: 64)")
    s.add_argument("--threads", type=int, default=1, help="torch threads per model call (default: 1)")

    n = sub.add_parser("inspect", help="look inside the LSTM: surprisal, top-5 predictions, gate heatmaps",
                       description="Write an HTML report (and optionally a PNG) of what an LSTM checkpoint does on a short text: "
                                   "surprisal and top-5 predictions per character, and input, forget and output gates and cell state of a few units.")
    n.add_argument("checkpoint", type=_path, help="checkpoint folder or run folder (its best/ checkpoint, or last/ before it has one); cell lstm or scratch")
    n.add_argument("--text", default=None, help="the text to inspect (\\n stands for a line break); at most 2,000 characters")
    n.add_argument("--file", "--text-file", dest="file", type=_path, default=None, help="read the text from this file (or the .txt files of a folder) instead")
    n.add_argument("--context", default=None, help="text the model reads first, not shown (\\n stands for a line break): the inspected "
                   "text then starts from the state it left instead of the zero state; at most 2,000 characters")
    n.add_argument("--context-file", type=_path, default=None, help="read the context from this file (or the .txt files of a folder) instead")
    n.add_argument("--encoding", help="text encoding of --file and --context-file (default: utf-8, and for a file that is "
                                      "not, the encoding the model's training text was read in)")
    n.add_argument("--out", type=_path, default="inspect.html", help="the HTML report to write (default: inspect.html)")
    n.add_argument("--png", type=_path, default=None, help="also write the heatmaps as this PNG")
    n.add_argument("--layer", type=int, default=None, help="layer to show, from 0 (default: the last)")
    n.add_argument("--units", default=None, help="units to show, like 0,5,7 (default: units found automatically, then the most varied; 16 in all)")
    return p


def cmd_train(args: argparse.Namespace) -> int:
    """``charlm train`` in one process, or as one process of a job that torchrun started (see distributed.py)."""
    from . import distributed
    from .checkpoint import release_run_locks

    world, rank, local_rank = distributed.from_env()
    try:
        with (open(os.devnull, "w", encoding="utf-8") as null, contextlib.redirect_stdout(null if rank else _OutputGone(sys.stdout)),
              contextlib.redirect_stderr(_OutputGone(sys.stderr))):
            try:
                code = _train(args)  # rank 0 alone prints
            finally:
                release_run_locks()
    except RuntimeError as e:
        if not distributed.launched() or not distributed.is_collective_failure(e):
            raise
        error = CharlmError(f"rank {rank}: {distributed.lost_contact(e, args.dist_timeout)}", exit_code=1)
        # the process group's threads wait on a peer that is gone: exiting normally can abort in their teardown
        # (SIGABRT, "terminate called without an active exception") after the message, so main() exits at once
        error.hard_exit = True
        raise error from None
    except (CharlmError, ValueError) as e:
        exit_code = getattr(e, "exit_code", 2)
        distributed.teardown(settle=True)  # (in a job, where each process raises it at once: a diverged loss, ...)
        if world > 1 and isinstance(e, distributed.DistributedError):
            raise CharlmError(f"rank {rank}: {e}", exit_code) from None
        if rank == 0:
            raise
        if local_rank == 0:  # another machine: it may lack a file that rank 0's has
            raise CharlmError(f"rank {rank}: {e}", exit_code) from None
        return exit_code  # the first process on this machine says the same
    return code


def _train(args: argparse.Namespace) -> int:
    from . import checkpoint as ckpt_io
    from . import distributed
    from .data import bundled_corpus, checkpoint_corpus, load_corpus, typed_line_breaks
    from .train import Trainer, TrainingInterrupted, model_config_for, pick_device

    overrides = {**given(args, ModelConfig), **given(args, TrainConfig)}
    if "prefixes" in overrides:  # \n typed is a line break, as in generate's --prefix
        overrides["prefixes"] = type(overrides["prefixes"])(map(typed_line_breaks, overrides["prefixes"]))  # (not UTF-8: said by the config)
    resume, init_weights = None, None
    rank = distributed.from_env()[1]  # the first process alone writes, so it alone holds the run folder's lock
    if args.resume:
        if args.preset is not None:
            raise CharlmError("--preset and --resume do not go together: a resumed run keeps its own settings")
        resume = ckpt_io.load(args.resume, prefer="last")
        stored = {**to_dict(resume.model_config), **to_dict(resume.train_config)}
        typed = {k: os.path.abspath(v) if k in ("data", "init_from") and v else list(v) if isinstance(v, tuple) else v
                 for k, v in overrides.items()}  # paths as training stores them
        same = {k for k, v in typed.items() if k in stored and (stored[k] == v or k == "init_from" and _same_checkpoint(v, stored[k]))}
        changed = sorted(set(overrides) - RESUMABLE_OVERRIDES - same)  # a flag that repeats the run's own value changes nothing
        if changed:
            from .transfer import TUNABLE

            # (a new run from its weights keeps its architecture, newlines and <unk>: for other settings only)
            kept = {"newlines", "unk", "init_from"} | (set(field_names(ModelConfig)) - TUNABLE)
            hint = "" if kept & set(changed) else (
                f" (to train on from its weights with other settings, start a new run: {_from_weights(resume, typed, changed)})")
            raise CharlmError(f"cannot change {', '.join(map(_flag, changed))} when resuming; only "
                              f"{', '.join(sorted(map(_flag, RESUMABLE_OVERRIDES)))}{hint}")
        overrides = {k: v for k, v in overrides.items() if k not in same or k in RESUMABLE_OVERRIDES}
        home = ckpt_io.run_folder(resume.path)  # (None: a checkpoint kept apart, whose folder may hold anything)
        if home is None and "out" not in overrides:  # not written beside it unasked (a copy in ~/Downloads)
            raise CharlmError(f"{resume.path} is a checkpoint kept apart from its run (not a run folder's best/ or last/): "
                              f"give --out, the folder to continue the run in")
        out = overrides.pop("out", str(resume.path.parent))
        train_cfg = dataclasses.replace(resume.train_config, **overrides, out=out)
        _check_work_left(resume, train_cfg)
        elsewhere = home is None or Path(train_cfg.out).resolve() != home.resolve()  # continued into another folder
        if elsewhere:  # as a new run's --out: not over another run unless --overwrite
            _check_new_out(train_cfg.out, args.overwrite, locks=not rank)
        elif args.overwrite:
            raise CharlmError("--overwrite does not go with --resume into the run's own folder (it continues that run); "
                              "to start again, leave out --resume")
        else:
            if not rank:  # (rank 1 and on write stderr too: said once)
                _note_rewind(resume)
        ckpt_io.check_writable(train_cfg.out, "--out", folder=True)
        if not rank and Path(train_cfg.out).is_dir():  # a folder still to be made is locked once the run starts, below
            ckpt_io.lock_run(train_cfg.out)
        if resume.path.name.startswith(".") and not resume.path.exists():  # read where a killed save left it: put back since
            resume.path = resume.path.parent / "last"
        model_cfg = resume.model_config
        corpus = checkpoint_corpus(resume, train_cfg)
        t, pending = resume.trainer, resume.trainer.get("pending_validation")  # counted as the progress lines count
        row = resume.metrics[-1] if resume.metrics else {}
        if pending and pending["at_epoch_end"] or not t["batch"]:
            where = f"after epoch {t['epoch']} of {train_cfg.epochs}"
        elif row.get("step") == t["step"] and "epoch" in row:  # saved at a validation inside the epoch: as its line said
            where = f"at epoch {row['epoch']} of {train_cfg.epochs}, in epoch {t['epoch'] + 1}, after batch {t['batch']}"
        else:
            where = f"in epoch {t['epoch'] + 1} of {train_cfg.epochs}, after batch {t['batch']}"
        resuming = f"resuming {resume.path} {where}" + ("; first the validation that was due when it stopped" if pending else "")
    else:
        preset = DEFAULT_PRESET if args.preset is None else args.preset  # --preset '' is an unknown preset, not the default
        values, carried = {**get_preset(preset), **overrides}, {}
        if args.preset is None and overrides.get("init_from"):  # a fine-tuning goes on as its model was trained, unless told
            carried = _pretrained_settings(overrides["init_from"], values.get("data", ""))
            if overrides.get("unk") is False and carried["unk"]:
                raise CharlmError(_no_unk(overrides["init_from"]))
            values = {**get_preset(preset), **carried, **overrides}
            # (no prefixes, a run of one's own text's: what a run of that text gets anyway, and no flag says so)
            taken = [_as_flag(k, v) for k, v in carried.items() if k not in overrides and v != _preset_value(preset, k) and v != []]
            print(f"note: fine-tuning with the settings {overrides['init_from']} was trained with, where not given"
                  f"{': ' + ' '.join(taken) if taken else ' (the same as the default preset)'}; --preset NAME takes a preset's", flush=True)
        check_requires(preset, values)
        own_out = None
        own_text = bool(overrides.get("data") and owns_its_data(preset) and not _same_file(overrides["data"], bundled_corpus()))
        if own_text:
            # your own text: not into runs/jaychou, nor sampled from 分开 and 不分开 (the lyrics' own openings)
            if "out" not in overrides:
                own_out = values["out"] = f"runs/{Path(os.path.abspath(overrides['data'])).stem.lstrip('.') or 'mine'}"
            if "prefixes" not in overrides and "prefixes" not in carried:  # (a run training on from its own text: its own)
                values["prefixes"] = ()  # its samples start a line (--prefixes to give some)
        train_cfg = TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
        if overrides.get("momentum") and train_cfg.optimizer != "sgd":  # (it was left out unsaid, and shown as in use)
            raise CharlmError(f"--momentum works with --optimizer sgd, and this run's is {train_cfg.optimizer} (whose moments "
                              f"are its own): it would do nothing; give --optimizer sgd, or leave --momentum out")
        # kept absolute: --resume, --check-copy, --bigram and serve read them again from anywhere
        train_cfg = dataclasses.replace(train_cfg, **{k: os.path.abspath(getattr(train_cfg, k)) for k in ("data", "init_from")
                                                      if getattr(train_cfg, k)})
        if train_cfg.data and os.path.exists(train_cfg.data) and (
                ckpt_io.names_a_stream(train_cfg.data) or not (os.path.isfile(train_cfg.data) or os.path.isdir(train_cfg.data))):
            raise CharlmError(f"--data {train_cfg.data} is not a regular file (a pipe, a device or a stream): the training text is "
                              f"read again later (--resume, --check-copy, --bigram, serve); save it to a file and give that")
        model_fields = {k: v for k, v in values.items() if k in field_names(ModelConfig)}
        # validate before reading the corpus: the pre-trained model's architecture, or the one asked for
        base = (_load_base(train_cfg, given(args, ModelConfig), given(args, TrainConfig)) if train_cfg.init_from
                else ModelConfig(**model_fields, vocab_size=1))
        if train_cfg.init_from:
            _check_out_apart(train_cfg.out, base.path, given="out" in overrides)
            if not base.path.name.startswith("."):  # recorded as the checkpoint read, not its run folder (whose best/ moves on)
                train_cfg = dataclasses.replace(train_cfg, init_from=os.path.abspath(base.path))
        if train_cfg.init_from and train_cfg.newlines != base.train_config.newlines:  # not given (refused above if it was)
            train_cfg = dataclasses.replace(train_cfg, newlines=base.train_config.newlines)
            print(f"note: {base.path} was trained with --newlines {train_cfg.newlines}, so the fine-tuning reads its text so too", flush=True)
        if train_cfg.init_from and base.vocab.unk and not train_cfg.unk:  # its <unk> row stays, and is used as such
            train_cfg = dataclasses.replace(train_cfg, unk=True)
            print(f"note: {base.path} has <unk>, so the fine-tuned model has it too (as with --unk)", flush=True)
        _check_new_out(train_cfg.out, args.overwrite, locks=not rank)
        corpus = load_corpus(train_cfg)
        if own_out:
            print(f"note: writing to {_shell(own_out)} (--out to name another folder)", flush=True)
        if (args.preset is None and own_text and not train_cfg.init_from and not given(args, ModelConfig)
                and len(corpus.train_text) >= LARGE_TEXT):
            larger = ("--preset songci's (1x512, made for 1.7M characters of Chinese" if len(corpus.vocab) > 1000 else
                      "--preset shakespeare-cpu's (2x384, made for 1.1M characters of English")  # (by the size of its script)
            print(f"note: the model is the default preset's ({DEFAULT_PRESET}: a small, heavily regularised model for "
                  f"60,000 characters of lyrics); {len(corpus.train_text):,} characters to train on may gain from a larger, "
                  f"less regularised one, such as {larger}; give it your --data, an --out and --prefixes)", flush=True)
        if train_cfg.init_from:
            init_weights, model_cfg, corpus = _fine_tune_setup(base, corpus, model_fields)
            if seen := _seen_lines(corpus.val_text, base, where=f"the text {base.path} was trained on"):
                print(f"note: held out from this fine-tuning, but not unseen: {seen}", flush=True)
        else:
            model_cfg = model_config_for(model_fields, len(corpus.vocab))
    distributed.check_batch_size(train_cfg.batch_size, distributed.from_env()[0])
    if not rank:  # (checked again as the training starts; here, before a resume is announced)
        for name in ("best", "last"):
            ckpt_io.check_replaceable(Path(train_cfg.out) / name, overwrite=args.overwrite)
    dist = distributed.setup(pick_device(train_cfg.device), args.dist_timeout)
    # --overwrite: a new run, or a resume into another folder (its own one is refused above); fit() clears the old one
    trainer = Trainer(model_cfg, train_cfg, corpus, resume=resume, init_weights=init_weights, dist=dist, overwrite=args.overwrite)
    if resume is not None:  # said once its state has been restored (a changed training text is refused there)
        print(resuming, flush=True)
    made = ckpt_io.missing_folders(trainer.out) if dist.is_main else []
    if dist.is_main:
        ckpt_io.lock_run(trainer.out)  # a folder made just now (one there already was locked when checked)
    try:
        metrics = trainer.fit()
    except TrainingInterrupted as e:
        if dist.is_main:
            again = "torchrun <the same flags> -m charlm train --resume" if dist.enabled else "charlm train --resume"
            if e.finished == "time limit":  # stopped while writing the samples that close the run
                print(f"\ninterrupted while writing the samples; the training had reached --max-minutes {train_cfg.max_minutes:g}: "
                      f"checkpoint written to {e.path}; continue with: {again} {_shell(trainer.out)} --max-minutes <more>", file=sys.stderr)
            elif e.finished:
                ended = "its last epoch" if e.finished == "epochs" else "an early stop"
                print(f"\ninterrupted while writing the samples; the training had ended ({ended}): checkpoints "
                      f"{trainer.out / 'best'} (best) and {e.path} (last)", file=sys.stderr)
            else:
                print(f"\ninterrupted: checkpoint written to {e.path}; continue with: {again} {_shell(trainer.out)}", file=sys.stderr)
            with contextlib.suppress(_Stopped):  # said first: a second Ctrl-C while plotting loses no line of it
                with _signals_raised():
                    _plot(trainer, trainer.metrics)  # the epochs so far, as a finished run has it
        distributed.teardown()
        return 128 + e.signum
    except BaseException:
        ckpt_io.remove_empty(made)  # a run that failed before its first checkpoint left nothing in them (fit() removed its metrics)
        raise
    distributed.teardown()
    if not dist.is_main:  # rank 0 alone plots and reports
        return 0
    try:
        with _signals_raised():
            return _report_run(trainer, metrics, corpus, train_cfg)
    except _Stopped as e:  # the training is over and saved: only its report is cut short
        print(f"\ninterrupted after the training had ended, while writing its report: checkpoints {trainer.out / 'best'} "
              f"(best) and {trainer.out / 'last'} (last)", file=sys.stderr)
        return 128 + e.signum


class _Stopped(BaseException):  # (as KeyboardInterrupt is: no `except Exception` on the way swallows it)
    """Ctrl-C or SIGTERM (Ctrl-Break on Windows) outside a training's own handling, as :func:`_signals_raised` raises it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raised():
    """Ctrl-C, SIGTERM and Ctrl-Break raise :class:`_Stopped` in the block, so that it can say what was kept."""
    from .train import catch_signals, restore_signals

    def stop(signum, frame):
        raise _Stopped(signum)

    handlers = catch_signals(stop)
    try:
        yield
    finally:
        restore_signals(handlers)


def _plot(trainer, metrics: list[dict]) -> Path | str | None:
    """curves.png drawn, or a note why it is not (a full disk): the checkpoints are written, and the run's report and
    exit status are not lost for want of a picture."""
    from .train import plot_metrics

    try:
        return plot_metrics(metrics, trainer.out / "curves.png", trainer.curve_label)
    except CharlmError as e:
        print(f"note: the plot was not drawn: {e}", file=sys.stderr)
        return "not drawn"


def _report_run(trainer, metrics: list[dict], corpus, train_cfg) -> int:
    """What a finished training says last: the held-out perplexity, a bigram for scale, and where its files are."""
    from .train import held_out_unk

    plot = _plot(trainer, metrics)
    # (the rows best/ stands for: after a best/ that was lost, the ones since)
    best = min((m for m in metrics[trainer.best_from_row :] if m.get("val_loss") is not None), key=lambda m: m["val_loss"], default=None)
    if best is not None:
        last = metrics[-1]
        skipped = (f" over {len(corpus.val_text) - trainer.val_skipped - 1:,} held-out characters scored "  # as eval says it: the first is read, not scored
                   f"({trainer.val_skipped:,} outside the vocabulary skipped)") if trainer.val_skipped else ""
        as_unk = held_out_unk(trainer)  # (as eval's note has it)
        unk = f"; {as_unk:,} of its characters read and scored as <unk>, easier to predict than each itself" if as_unk else ""
        def ppl(m):  # (one too large for a float: inf, or null as metrics.jsonl and a resumed run have it)
            return f"{m['val_ppl']:,.2f}" if m["val_ppl"] is not None and m["val_ppl"] < math.inf else "beyond a float's range"

        units = (f" ({last['val_loss']:.4f} nats, {last['val_loss'] / math.log(2):.3f} bits per character)"
                 if last.get("val_loss") is not None else "")
        print(f"held-out perplexity (last {train_cfg.val_fraction * 100:g}% of the corpus, not trained on{unk}){skipped}: "
              f"{ppl(last)} after epoch {last['epoch']}{units}; best {ppl(best)} after epoch {best['epoch']} (saved as best/)")
        print(f"training perplexity after epoch {last['epoch']}: {last['train_ppl']:.3f}")
        from .baseline import bigram_loss

        bigram = math.exp(bigram_loss(trainer.train_ids.numpy(), trainer.val_ids.cpu().numpy(), len(corpus.vocab)))
        print(f"for scale, on the same held-out text: a bigram count model of the training text {bigram:,.2f}, "
              f"a uniform guess {len(corpus.vocab):,}")
    print(f"checkpoints: {trainer.out / 'best'} (best) and {trainer.out / 'last'} (resumable); metrics: {trainer.out / 'metrics.jsonl'}; plot: {plot}")
    return 0


def _shell(path, windows: bool = os.name == "nt") -> str:
    """A path as a command to paste should have it (in cmd.exe on Windows): quoted if need be, and not taken for a flag."""
    import shlex

    path = str(path)
    path = f".{os.sep}{path}" if path.startswith("-") else path
    if windows:  # cmd.exe quotes with " (a Windows name holds none), and & ^ | < > ( ) are its own outside them
        return f'"{path}"' if re.search(r"[^\w.:\\/-]", path) else path
    return shlex.quote(path)


def _check_work_left(resume, cfg) -> None:
    """A resume that would train nothing says so, and how to go on (it used to end at once, silently)."""
    t = resume.trainer
    if t.get("pending_validation"):  # stopped while validating: that validation is still to do
        return
    if t["epoch"] >= cfg.epochs:
        n = t["epoch"]
        done = (f"its {n} epoch{'s' if n != 1 else ''}" if n == cfg.epochs else
                f"{n} epoch{'s' if n != 1 else ''}, more than --epochs {cfg.epochs}")
        raise CharlmError(f"{resume.path} has already trained {done}: give --epochs above {n} to train on")
    if cfg.max_minutes and t.get("train_seconds", 0.0) >= cfg.max_minutes * 60:
        raise CharlmError(f"{resume.path} has already trained its {cfg.max_minutes:g} minute{'s' if cfg.max_minutes != 1 else ''} "
                          f"(--max-minutes): give a larger --max-minutes, or 0 for no limit, to train on")


def _check_new_out(out: str, overwrite: bool, locks: bool) -> None:
    """A fresh run's --out: a folder that can be made, not in use, and not holding another run unless --overwrite."""
    from . import checkpoint as ckpt_io

    out = ckpt_io.check_writable(out, "--out", folder=True)
    # a run nested in a run's best/ or last/ went when that checkpoint was next saved, unasked (links followed)
    whole = Path(os.path.realpath(out))
    if (inside := next((p for p in (whole, *whole.parents) if ckpt_io.run_folder(p) and (p / ckpt_io.META_FILE).is_file()),
                       None)) is not None:
        raise CharlmError(f"--out {out} is {'' if inside == whole else 'inside '}the checkpoint {inside}: a run written there "
                          f"is lost when that checkpoint's training saves it anew (it replaces the folder whole); give another --out")
    if locks and out.is_dir():  # held from here on, so that nothing starts writing it while this run starts
        ckpt_io.lock_run(out)
    if overwrite or not any((out / name).exists() for name in ckpt_io.RUN_FILES[:3]):
        return
    if ckpt_io.holds_run(out):
        raise CharlmError(f"{out} already holds a training run; continue it with `charlm train --resume {_shell(out)}`, "
                          f"replace it with --overwrite, or give another --out")
    # a run stopped before its first checkpoint (killed, or it failed): nothing to resume
    raise CharlmError(f"{out} holds a training run that stopped before its first checkpoint, so it cannot be resumed; "
                      f"replace it with --overwrite, or give another --out")


def _check_out_apart(out: str, source: Path, given: bool = True) -> None:
    """A fine-tuning's --out that is the checkpoint it starts from, or that checkpoint's run folder: refused, since its
    best/ and last/ (and with --overwrite the whole run) would be written over the pre-trained model.  ``given``: --out
    was typed (else it is the folder named after the --data)."""
    out_, src = Path(out).resolve(), Path(source).resolve()
    if out_ == src or out_ == src.parent:
        named = f"--out {out}" if given else f"the output folder {out} (named after the --data: no --out was given)"
        raise CharlmError(f"{named} {'is' if out_ == src else 'holds'} the checkpoint --init-from starts from ({src}): the "
                          f"fine-tuning would write over the pre-trained model; give another --out")


def _note_rewind(resume) -> None:
    """A resume from a checkpoint behind the run's last/ (its best/, say) into the same folder goes on from there: last/ and
    the later rows of metrics.jsonl are replaced as it starts.  Said, since those later epochs are lost."""
    from . import checkpoint as ckpt_io

    if Path(resume.path).name == "last":
        return
    last = Path(resume.path).parent / "last"
    if Path(resume.path).name == "best" and not os.path.lexists(last):  # (a last/ there but unreadable warns as it is read)
        print(f"note: {last} is not there: resuming from {resume.path} (step {resume.trainer.get('step')}), the run's "
              f"best/; anything trained after it is trained again", file=sys.stderr, flush=True)
        return
    try:
        later = ckpt_io.load(last, with_weights=False, with_trainer=False)
    except CharlmError:
        return
    if later.trainer.get("step", 0) > resume.trainer.get("step", 0):  # (a Ctrl-C's last/ may be part-way into the next epoch)
        at = lambda c: f" (step {c.trainer.get('step')})"  # noqa: E731
        print(f"note: resuming from {resume.path}{at(resume)}, behind {later.path}{at(later)}: the run goes on from there, "
              f"and last/ and the later rows of metrics.jsonl are replaced (--out another folder keeps them)", file=sys.stderr, flush=True)


def _from_weights(ckpt, typed: dict, changed: list[str]) -> str:
    """The command that trains on from ``ckpt`` (a run's last/) with the settings ``changed`` of ``typed`` (as given):
    a fine-tuning on its text (or the --data given)."""
    from .data import IN_MEMORY

    data = typed.get("data", ckpt.train_config.data)
    flags = [f"--data {_shell(data)}"] if data and data != IN_MEMORY else []
    flags += [_as_flag(k, typed[k]) for k in changed if k != "data"]
    return f"charlm train --init-from {_shell(ckpt.path)} {' '.join(flags)} --out NEW_FOLDER".replace("  ", " ")


LARGE_TEXT = 270_000  # training characters of one's own text from which the default model is said to be small


def _as_flag(k: str, v) -> str:
    """A setting as the flag that gives it: ``--lr 0.001``, ``--unk``, ``--no-tie-weights``, ``--prefixes 分开 不分开``."""
    return (_flag(k) if v is True else f"--no-{_flag(k)[2:]}" if v is False else
            f"{_flag(k)} {' '.join(map(_shell, v)) if isinstance(v, (list, tuple)) else _shell(v)}")


def _preset_value(preset: str, k: str):
    """What ``preset`` sets ``k`` to: its own value, else the config's default."""
    fields = {f.name: f for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    v = get_preset(preset).get(k, fields[k].default)
    return list(v) if isinstance(v, tuple) else v


# What a fine-tuning does not take from the pre-trained run's settings: where its text and output are, and what
# depends on that text's size or on the machine (its length, epochs and --max-minutes, is taken whole)
NOT_CARRIED_OVER = {"data", "encoding", "val_fraction", "limit_chars", "init_from", "eval_every", "prefixes",
                    "device", "precision", "cuda_graph", "out"}
# ... but are taken when the fine-tuning reads the very text the model was trained on (training on with other settings):
# the same cut and split, so that its held-out text is the one the model never saw
SAME_TEXT_CARRIED = {"encoding", "val_fraction", "limit_chars", "prefixes"}


def _pretrained_settings(path, data: str = "") -> dict:
    """The settings the run (or checkpoint) ``--init-from`` names was trained with that a fine-tuning without ``--preset``
    takes: its dropouts, and its training settings but :data:`NOT_CARRIED_OVER` (less :data:`SAME_TEXT_CARRIED`
    where ``data`` is the file it was trained on; "" is the bundled lyrics)."""
    from . import checkpoint as ckpt_io
    from .data import bundled_corpus
    from .transfer import TUNABLE

    base = ckpt_io.load(path, with_trainer=False, with_weights=False)
    same_text = _same_file(data or bundled_corpus(), base.train_config.data or bundled_corpus())  # ("": the bundled lyrics)
    skip = NOT_CARRIED_OVER - (SAME_TEXT_CARRIED if same_text else set())
    trained = {k: v for k, v in to_dict(base.train_config).items() if k not in skip}
    trained.update({k: getattr(base.model_config, k) for k in TUNABLE})
    return trained


def _same_checkpoint(a: str, b: str) -> bool:
    """Whether two --init-from paths name one checkpoint (a run folder and its best/, as a fine-tuning records it)."""
    from . import checkpoint as ckpt_io

    try:
        return bool(a and b) and ckpt_io.resolve(a).resolve() == ckpt_io.resolve(b).resolve()  # (through links too)
    except CharlmError:
        return False


def _no_unk(path) -> str:
    return (f"--no-unk: {path} was trained with <unk> (id 0 of its vocabulary, which a fine-tuning keeps and uses); "
            f"leave out --no-unk")


def _load_base(train_cfg, flags: dict, given_train: dict):
    """The checkpoint ``--init-from`` names, once the flags given are known to fit it."""
    from . import checkpoint as ckpt_io
    from .transfer import changed_architecture

    base = ckpt_io.load(train_cfg.init_from, with_trainer=False)
    if "newlines" in given_train and train_cfg.newlines != base.train_config.newlines:
        raise CharlmError(f"--newlines {train_cfg.newlines}: {base.path} was trained with --newlines {base.train_config.newlines}; "
                          f"fine-tune with the same (the model's line breaks or spaces were learned that way)")
    if given_train.get("unk") is False and base.vocab.unk:
        raise CharlmError(_no_unk(base.path))
    if train_cfg.unk and not base.vocab.unk:
        raise CharlmError(f"--unk: {base.path} was trained without <unk>, and <unk> must be id 0; fine-tune without --unk "
                          "(the corpus's new characters get rows of their own) or pre-train with --unk")
    if fixed := changed_architecture(base.model_config, flags):
        raise CharlmError(f"--init-from keeps the pre-trained architecture; cannot change {', '.join(map(_flag, fixed))}")
    return base


def _fine_tune_setup(base, corpus, model_fields: dict):
    """Weights, model config and corpus for ``--init-from``: the pre-trained model with its vocabulary grown."""
    from .transfer import TUNABLE, fine_tune_setup

    # (the flags given were checked against the pre-trained model in _load_base; the preset's other values do not apply)
    weights, model_cfg, corpus = fine_tune_setup(base, corpus, {k: v for k, v in model_fields.items() if k in TUNABLE})
    grown = len(corpus.vocab) - len(base.vocab)
    known = len(base.vocab) - base.vocab.unk  # <unk> is no character
    used = set(corpus.train_text) | set(corpus.val_text)
    unused = sum(c not in used for c in base.vocab.itos[base.vocab.unk:])
    print(f"fine-tuning {base.path}: its vocabulary of {known:,} characters{' (and <unk>)' if base.vocab.unk else ''}, "
          f"and {grown:,} new in this text" + (f"; {unused:,} of its characters are not in this text (kept: the model may "
                                                  f"still write them)" if unused else ""), flush=True)
    return weights, model_cfg, corpus


def _sample_config(args) -> SampleConfig:
    return SampleConfig(**given(args, SampleConfig))


def cmd_generate(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .data import typed_line_breaks
    from .sampling import check_options, default_prefix, generate, make_generator, read_inputs, show_chars, unknown_chars
    from .train import pick_device

    cfg = _sample_config(args)
    if args.acrostic == "":  # given, but empty (an unset shell variable): not silently a plain generation
        raise CharlmError("--acrostic is empty: give the characters its lines start with")
    # \n typed is a line break, as in inspect's --text (in an acrostic, a separator as spaces are)
    prefix, style_prefix, acrostic = (typed_line_breaks(t, flag) if t is not None else None for t, flag in (
        (args.prefix, "--prefix"), (args.style_prefix, "--style-prefix"), (args.acrostic, "--acrostic")))
    check_options(cfg, given(args, SampleConfig), _flag, acrostic or "")
    device = pick_device(args.device)
    model, vocab, ckpt = load_model(args.checkpoint, device)
    # (newlines: line ends as the model read them in training, \r\n as \n; spaces, if so trained)
    inputs = read_inputs(vocab, prefix, style_prefix, acrostic or "", unknown=args.unknown, name=_flag,
                         hint="use --unknown skip to drop them",
                         default=default_prefix(vocab, ckpt.train_config.prefixes), newlines=ckpt.train_config.newlines)
    prefix = inputs.prefix
    for field, dropped in inputs.skipped.items():  # dropped, but not in silence
        print(f"note: skipped in the {field.replace('_', ' ')}, outside the vocabulary: {show_chars(dropped)}", file=sys.stderr)
    for field in ("prefix", "style_prefix"):  # read, but not in silence: a model trained with --unk reads them as <unk>
        if vocab.unk and (outside := unknown_chars(vocab, getattr(inputs, field), exact=True)):
            print(f"note: read as <unk> in the {field.replace('_', ' ')} (outside the vocabulary; this model was trained to read "
                  f"rare characters so): {show_chars(outside)}", file=sys.stderr)
    if cfg.lines and (last := len(prefix.rsplit("\n", 1)[-1])) >= cfg.max_line_length:
        when = "at once" if "\n" in vocab or " " in vocab else "after one more character"  # (with nothing to end it on, a line is cut)
        print(f"note: the prefix's last line is {last} characters already, at --max-line-length {cfg.max_line_length}: it is "
              f"ended {when} (a larger --max-line-length lets the model go on with it)", file=sys.stderr)
    index = _copy_index(ckpt) if args.check_copy else None
    if cfg.seed < 0:  # draw the seed here and say it, so that a sample worth keeping can be made again
        import secrets

        cfg = dataclasses.replace(cfg, seed=secrets.randbelow(2**31))
        if not cfg.greedy:  # greedy text is the same with any seed
            print(f"seed {cfg.seed} (--seed {cfg.seed} gives this text again)", file=sys.stderr)
    gen = make_generator(cfg.seed, device)
    out = sys.stdout
    texts = [""] * cfg.num_samples
    try:
        for step in generate(model, vocab, prefix, cfg, style_prefix=inputs.style_prefix, acrostic=inputs.acrostic, generator=gen):
            if cfg.num_samples == 1:  # one sample streams as it is made
                out.write(step[0])
                out.flush()
            texts = [a + b for a, b in zip(texts, step)]  # (after the write: a Ctrl-C's line break goes by what was written)
    except KeyboardInterrupt:  # Ctrl-C: what was made so far is printed, not lost
        if cfg.num_samples > 1:
            _write_samples(out, texts, " (cut short)")
        elif not texts[0].endswith("\n"):  # the shell's prompt on a line of its own
            out.write("\n")
        out.flush()
        raise
    if cfg.num_samples == 1:
        if not texts[0].endswith("\n"):  # --lines ends on its line break already
            out.write("\n")
    else:
        _write_samples(out, texts)
    out.flush()
    if cfg.lines and not inputs.acrostic:  # --lines stops at a number of characters too (so that it always ends)
        head = prefix.rsplit("\n", 1)[-1]  # (the prefix's last line is the first line's start)
        short = [(i + 1, got) for i, t in enumerate(texts)
                 if (got := sum(bool(s) for s in (head + t[len(prefix):]).split("\n")[:-1])) < cfg.lines]
        for i, got in short:
            print(f"note: {'sample ' + str(i) + ' has' if cfg.num_samples > 1 else 'the text has'} {got} whole line{'s' if got != 1 else ''} of the "
                  f"{cfg.lines} asked: the model wrote blank lines, which do not count, and a sample of --lines "
                  f"stops at {cfg.lines * (cfg.max_line_length + 2):,} characters", file=sys.stderr)
    if index is not None:
        _report_copies(index, [t[len(prefix):] for t in texts])  # what the model wrote: the prefix is the user's
    return 0


def _write_samples(out, texts: list[str], note: str = "") -> None:
    for i, t in enumerate(texts):
        out.write(f"--- sample {i + 1}{note} ---\n{t.rstrip(chr(10))}\n")


def _training_text(ckpt, flag: str) -> str:
    """The checkpoint's training text, or a one-line error naming ``flag``, the option that needs it."""
    from .data import training_text

    try:
        return training_text(ckpt)
    except CharlmError as e:
        raise CharlmError(f"{flag} needs the training text: {e}") from None


def _copy_index(ckpt, text: str | None = None):
    """The copy check's index of the training text (``text``, when it was read already) and of any pre-training text."""
    from .copycheck import SAID_FROM, CopyIndex
    from .data import pretraining_texts

    text = _training_text(ckpt, "--check-copy") if text is None else text
    pre, notes = pretraining_texts(ckpt)
    for note in notes:
        print(f"copy check: {note}", file=sys.stderr)
    if pre:
        print(f"copy check: against the training text and the pre-training text of {', '.join(name for name, _ in pre)}", file=sys.stderr)
    texts = [text] + [t for _, t in pre]
    total = sum(map(len, texts))
    if total >= SAID_FROM:  # say what the wait is
        print(f"copy check: indexing the {total:,} characters of the training text{'s' if pre else ''}", file=sys.stderr, flush=True)
    return CopyIndex(texts)


def _report_copies(index, samples: list[str], quiet: bool = False) -> list:
    """Each sample's copy report (on stderr, unless ``quiet``: a JSON report holds them)."""
    import statistics

    reports = [index.check(s.strip("\n")) for s in samples]
    if quiet:
        return reports
    for i, r in enumerate(reports):
        print((f"sample {i + 1}: " if len(reports) > 1 else "") + r.line(), file=sys.stderr)
    if len(reports) > 1:
        longest = [r.longest for r in reports]
        print(f"copy check over {len(reports)} samples: longest copied span median {statistics.median(longest):g}, "
              f"max {max(longest)} characters", file=sys.stderr)
    return reports


def cmd_eval(args: argparse.Namespace) -> int:
    import collections
    import json

    import torch

    from .checkpoint import load_model
    from .data import SPACED_NOTE, normalize, spaced_symbols, training_text
    from .progress import Progress
    from .sampling import FORM_NOTE, other_width, show_chars, vocab_form
    from .train import DYNAMIC_CHUNK, evaluate, evaluate_dynamic, pick_device
    from .vocab import counted

    device = pick_device(args.device)
    model, vocab, ckpt = load_model(args.checkpoint, device)
    if not 0 <= args.dynamic <= 10:
        raise CharlmError(f"--dynamic must be a learning rate from 0 to 10 (0.001 to 1 are the useful ones), got {args.dynamic}")
    if args.file is None and args.check_copy:
        raise CharlmError("--check-copy needs a FILE of samples to check (generate --num-samples N writes one)")
    if args.file is None and args.encoding is not None:  # (not silently nothing: an unknown name was not even checked)
        raise CharlmError("--encoding is the encoding of FILE; without FILE the held-out text is read as the training "
                          "read it: leave --encoding out")
    if args.each_line and (clash := next((f for f, on in (("--dynamic", args.dynamic), ("--bigram", args.bigram),
                                                           ("--check-copy", args.check_copy)) if on), None)):
        raise CharlmError(f"--each-line scores each line by itself, and {clash} "
                          + ("checks each sample" if clash == "--check-copy" else "reads the text as one") + ": give one of them")
    newlines = ckpt.train_config.newlines
    if args.each_line and args.file is None and newlines == "space":
        raise CharlmError("--each-line needs a FILE for this model: it reads line breaks as spaces, so its held-out text "
                          "has no lines left to part")
    text, source, notes = _eval_text(args, ckpt)  # line ends as \n; newlines as the model reads them below
    needs = [flag for flag, on in (("--check-copy", args.check_copy), ("--bigram", args.bigram)) if on]
    train_text = _training_text(ckpt, needs[0]) if needs else None  # read once, before any scoring
    if args.each_line:  # (its rows are marked against it, and a FILE's lines checked: read once for both)
        with contextlib.suppress(CharlmError):  # (where it cannot be read, _mark_seen says why)
            train_text = _quietly(training_text, ckpt)
    # (in the Unicode form the vocabulary holds, as it is scored: an NFD copy of an NFC training text is a copy)
    if args.file is not None and not any(n.startswith(TRAINED_ON) for n in notes) and (seen := _seen_lines(vocab_form(vocab, text), ckpt, train_text)):
        notes.append(seen)
    index = None
    # A file of samples, as generate --num-samples writes them: its "--- sample N ---" lines are not text to score, and
    # where they are, they alone part the samples (a play has blank lines); with or without --check-copy, the same figure
    marker = f"^{SAMPLE_MARKER}$"
    markers = len(re.findall(marker, text, flags=re.M))
    if args.check_copy:
        pieces = re.split(marker if markers else r"\n\s*\n", text, flags=re.M)
        samples = [normalize(t.strip("\n"), newlines) for t in pieces if t.strip()]
        index = _copy_index(ckpt, train_text)  # before the scoring (as the training text is read): a missing one costs no wait
    if markers:  # (--each-line: emptied, so that the rows keep the file's line numbers; an empty line has no row)
        text = re.sub(marker if args.each_line else marker + r"\n?", "", text, flags=re.M)
        notes.append(f"the {_count(markers, 'line')} '--- sample N ---' that generate writes between samples "
                     f"{'are' if markers > 1 else 'is'} left out: the figure is of the samples' text")
    if (form := vocab_form(vocab, text)) != text:
        notes.append(FORM_NOTE)
    if spaced_symbols(text):
        notes.append(SPACED_NOTE)
    lines, text = form.split("\n"), normalize(form, newlines)
    unended = bool(lines[-1])  # a last line with no line break after it (said below, where --each-line scored it)
    if len(lines) > 1 and not lines[-1]:  # (what follows the last line break is no line: 5,000 lines, not 5,001)
        lines.pop()
    outside = collections.Counter(c for c in text if c not in vocab) if not counted(text).keys() <= vocab.stoi.keys() else collections.Counter()
    if outside and not vocab.unk and args.unknown == "error":
        raise CharlmError(f"{source}: {_count(sum(outside.values()), 'character')} outside the model's vocabulary: "
                          f"{show_chars(list(outside))}{other_width(vocab, outside, most=5)} (--unknown skip scores the rest)")
    ids = torch.from_numpy(vocab.encode_array(text, known=True))
    skipped = len(text) - len(ids)
    if len(ids) < 2 and not args.each_line:  # (a line is scored with the line breaks around it)
        raise CharlmError(f"{source}: too little to score: {len(ids)} of its {len(text):,} characters "
                          f"{'is' if len(ids) == 1 else 'are'} in the model's vocabulary, and it takes two"
                          + (f" (outside it: {show_chars(list(outside))})" if outside else ""))
    bigram_ids = vocab.encode_array(train_text, known=True) if args.bigram else None
    bar = Progress(len(lines) if args.each_line else len(ids), "scoring", "line" if args.each_line else "character")
    try:
        if args.each_line:
            rows = _score_lines(model, vocab, lines, newlines, bar.advance)
            if (marked := _mark_seen(rows, ckpt, train_text, notes)) and (seen := marked[0]):
                where = marked[1]  # (of the held-out text too: a chorus there repeats lines the model was trained on)
                notes.append(f"{_count(seen, 'line')} of the {sum(1 for r in rows if r['scored']):,} scored also "
                             f"{'occur as lines' if seen > 1 else 'occurs as a line'} of the {where}, word for word (marked "
                             f"so; in_training_text in --json): the model was trained on {'them' if seen > 1 else 'it'}")
            if unended and rows[-1]["line"] == len(lines) and rows[-1]["scored"]:  # ("scored" above "read" is no puzzle)
                notes.append("the last line has no line break after it: each line is scored with the break that ends it, "
                             "so one is added there, scored but not read")
            if not (n := sum(r["scored"] for r in rows)):
                raise CharlmError(f"{source}: too little to score: no line holds a character the model knows"
                                  + (f" (outside it: {show_chars(list(outside))})" if outside else ""))
            loss = sum(r["loss"] * r["scored"] for r in rows if r["scored"]) / n
        elif args.dynamic:
            loss, n = evaluate_dynamic(model, ids, args.dynamic, progress=bar.advance)
        else:
            loss, n = evaluate(model, ids, progress=bar.advance)
    finally:
        bar.close()
    if math.isnan(loss):
        raise CharlmError(f"dynamic evaluation diverged (the loss became NaN): --dynamic {args.dynamic:g} is too large; try 0.1 or less"
                          if args.dynamic else "the loss is NaN: the model's weights are not finite (a training run that diverged)",
                          exit_code=1)
    if args.dynamic:
        how = (f"ADAPTIVE (dynamic evaluation): read once as one stream, the state carried, and after scoring each "
               f"{DYNAMIC_CHUNK} characters one SGD step (lr {args.dynamic:g}, gradient norm clipped at 1) on them; "
               f"not comparable with static figures")
        if n <= DYNAMIC_CHUNK:
            how += "; the text is no longer than one chunk, so no update came before a score: the figure is the static one"
    elif args.each_line:
        how = (f"static, each line by itself: read from a fresh state after a line break{' (a space)' if newlines == 'space' else ''}, "
               f"its characters and the line break that ends it scored, the model unchanged by the text; the figures below "
               f"are over all the lines' characters")
    else:
        how = "static: read once as one stream, the state carried, the model unchanged by the text"
    if model.cfg.copy_window:
        how += f"; its copy attention looks back over up to {model.cfg.copy_window} characters of {'the line' if args.each_line else 'this text'} already read"
    as_unk = sum(outside.values()) if vocab.unk else 0  # read as <unk>, and scored so
    if skipped:
        share = skipped / len(text)
        notes.append(f"{'most of the text is outside the vocabulary: ' if share > 0.5 else ''}the {_count(skipped, 'character')} "
                     f"outside {'it' if share > 0.5 else 'the vocabulary'} ({share:.0%} of the text) {'are' if skipped > 1 else 'is'} left out of the figure, and the "
                     f"character after each is predicted across the gap: compare the figure only with figures over the same characters")
    # a space and a line break are one character to predict: easier (said where there are line breaks: the held-out
    # text's were read as spaces already)
    if newlines == "space" and (args.file is None or "\n" in form.strip("\n")):
        notes.append("this model reads line breaks as spaces (as it was trained): where the text has them, it predicts one "
                     "character for the two, so compare the figure only with models that read the text so")
    if as_unk:
        notes.append(f"the {_count(as_unk, 'character')} outside the vocabulary {'were' if as_unk > 1 else 'was'} read and "
                     f"scored as its one <unk>, easier to predict than each character itself: compare the figure only with "
                     f"models of this vocabulary")
    report = {
        "text": source,
        "checkpoint": str(ckpt.path),
        **_trained_so_far(ckpt),
        "vocabulary": len(vocab),
        "newlines": newlines,
        "characters": {"read": len(text), "scored": n, "skipped": skipped, "as_unk": as_unk,
                       "outside_vocabulary": [c for c, _ in outside.most_common()]},
        "scoring": "adaptive" if args.dynamic else "static",
        "how": how,
        **_figures(loss),
    }
    if bigram_ids is not None:
        from .baseline import bigram_loss

        report["bigram_perplexity"] = math.exp(bigram_loss(bigram_ids, ids.numpy(), len(vocab)))
    report["notes"] = notes
    if args.each_line:
        report["lines"] = rows
    if index is not None:
        reports = _report_copies(index, samples, quiet=args.json)
        report["copies"] = [dataclasses.asdict(r) for r in reports]
    if args.json:
        from .checkpoint import finite

        out = json.dumps(finite(report), ensure_ascii=False)  # an infinite loss as null: JSON has no Infinity
        try:  # \u escapes where the output cannot write every character (an emoji in GBK, a file name that is not
            out.encode(getattr(sys.stdout, "encoding", None) or "utf-8")  # UTF-8): the stream's own escapes are not JSON
        except (UnicodeEncodeError, LookupError):
            out = json.dumps(finite(report))
        print(out)
    else:
        _print_eval(report)
    return 0


def _score_lines(model, vocab, lines: list[str], newlines: str, progress) -> list[dict]:
    """``charlm eval --each-line``: each non-blank line scored by itself, from a fresh state after a line break, with the
    line break that ends it (so a line that stops short costs too); one row per line, numbered from 1."""
    import torch

    from .train import evaluate

    brk, rows = "\n" if newlines == "keep" else " ", []
    for number, line in enumerate(lines, 1):
        progress(number)  # (a running count, as Progress.advance takes it)
        if not line.strip():
            continue
        ids, skipped = vocab.encode_known(brk + line + brk)
        row = {"line": number, "text": line, "scored": 0, "skipped": skipped, "loss": None, "perplexity": None, "bits_per_character": None}
        if len(ids) >= 2 and (vocab.unk or any(c in vocab for c in line)):  # (not a line break after nothing known)
            loss, row["scored"] = evaluate(model, torch.tensor(ids, dtype=torch.long))
            row.update(_figures(loss))
        rows.append(row)
    return rows


MARK_LINE = 5  # characters a line needs for its being a line of the training text to be marked (I, Ay., 是: no)


def _mark_seen(rows: list[dict], ckpt, train_text: str | None, notes: list[str]) -> tuple[int, str] | None:
    """Each --each-line row's ``in_training_text``: whether the line (of MARK_LINE characters or more) is a whole line
    of the training text or of a pre-training text, where a ranking of candidates most needs it said; None for a
    shorter line, and for all where that cannot be told (a note in ``notes`` says why).  How many are marked, and what
    they were looked for in; None when none could be checked."""
    from .data import pretraining_texts, training_text

    for r in rows:
        r["in_training_text"] = None  # (until told)
    if ckpt.train_config.newlines == "space":  # (its training text's lines are one line of spaces: none to find)
        notes.append("this model was trained with line breaks read as spaces, so its training text has no lines to find "
                     "these in: no row is marked as one")
        return None
    try:
        texts = [_quietly(training_text, ckpt) if train_text is None else train_text]
        pre, left_out = _quietly(pretraining_texts, ckpt) if ckpt.train_config.init_from else ([], [])
    except CharlmError as e:
        notes.append(f"no row is marked as a line of the training text, which cannot be read: {e}")
        return None
    notes += [f"rows are marked against the training text alone: {n}" for n in left_out]
    known = {line.strip() for t in texts + [t for _, t in pre] for line in t.split("\n")}
    for r in rows:
        line = r["text"].strip()
        r["in_training_text"] = None if len(line) < MARK_LINE else line in known
    return sum(bool(r["in_training_text"]) for r in rows), "training text" + (" or its pre-training text" if pre else "")


def _eval_text(args: argparse.Namespace, ckpt) -> tuple[str, str, list[str]]:
    """The text ``charlm eval`` scores (line ends as \\n), what to call it, and notes on what it is: FILE, standard input
    (``-``), or without FILE the held-out part of the model's own training text."""
    from .data import (IN_MEMORY, HeldOutChanged, as_trained, bundled_corpus, decode_text, heldout_text, normalize, read_scored,
                       read_stream, stream_encoding)

    cfg = ckpt.train_config
    if args.file is None:
        if not cfg.val_fraction:
            raise CharlmError(f"give a FILE to score: {ckpt.path} was trained with nothing held out (--val-fraction 0)")
        try:
            text = heldout_text(ckpt)
        except HeldOutChanged:
            raise
        except CharlmError as e:
            raise CharlmError(f"scoring the held-out text needs the training text: {e}") from None
        share = f"{cfg.val_fraction:.0%}" if cfg.val_fraction >= 0.01 else f"{cfg.val_fraction * 100:.2g}%"  # (not 0%)
        source = f"the held-out part of {cfg.data or 'the bundled lyrics'} (its last {share}), never trained on"
        step = _trained_so_far(ckpt)["step"]
        validated = [m.get("step") for m in ckpt.metrics if isinstance(m, dict) and m.get("val_loss") is not None]
        if args.dynamic or args.each_line:  # not read as the validation reads it: the text alone is the same
            how = "adapting to it as it reads (--dynamic)" if args.dynamic else "each line by itself (--each-line)"
            notes = [f"the same text as the training's validation, but read {how}, not as one stream as the validation "
                     f"reads it: the figure is its own"]
        elif step is not None and step in validated:
            notes = ["the same text and figure as the training's validation"
                     + (", by which this checkpoint was chosen as the best" if ckpt.path.name == "best" else "")]
        elif step is not None:  # a last/ written when a training stopped between validations
            last = validated[-1] if validated and _count_of(validated[-1]) else None
            notes = ["the same text as the training's validation; this checkpoint was written at step "
                     f"{step:,}, " + (f"after its last validation (step {last:,})" if last is not None else
                                      "after its last validation" if validated else "before any validation")
                     + ", so the figure is its own"]
        else:  # (a checkpoint without its trainer's counts)
            notes = ["the same text as the training's validation"]
        return text, source, notes
    if args.file == "-":
        if sys.stdin is None:
            raise CharlmError("- reads standard input, and there is none (it is closed); give a FILE")
        raw = read_stream(sys.stdin.buffer, "standard input", stream_encoding(args.encoding, cfg.encoding))  # (read once)
        return normalize(as_trained(lambda enc: decode_text(raw, enc), args.encoding, cfg.encoding, "standard input")), "standard input", []
    text, notes = normalize(read_scored(args.file, args.encoding, cfg.encoding)), []
    if cfg.data != IN_MEMORY and _same_file(args.file, cfg.data or bundled_corpus()):
        part = (f"at most its first {cfg.limit_chars:,} characters were" if cfg.limit_chars  # (--limit-chars)
                else f"its first {1 - cfg.val_fraction:.0%} was" if cfg.val_fraction else "all of it was")
        notes.append(f"{TRAINED_ON}, and {part} trained on: the figure mixes seen and "
                     f"unseen text" + (f"; `charlm eval {_shell(str(args.checkpoint))}` alone scores the held-out part"
                                       if cfg.val_fraction else ""))
    return text, str(args.file), notes


def _quietly(read, ckpt):
    """``read(ckpt)`` (data.training_text, data.pretraining_texts) without the warnings reading a training text gives:
    the notes of reading it were the training's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(ckpt)


TRAINED_ON = "this is the text the model was trained on"
SAMPLE_MARKER = r"--- sample \d+(?: \(cut short\))? ---"  # the line generate --num-samples writes before each sample
SEEN_LINE = 10  # characters a line needs for its being in the training text to tell (a short one may be there by chance)


def _seen_lines(text: str, ckpt, train_text: str | None = None, most: int = 200, where: str = "the training text") -> str | None:
    """A note when over a quarter of a file's lines (of SEEN_LINE characters or more, shorter ones joined to those after
    them until as long; at most ``most`` of them, evenly spread; generate's sample markers left out) are found verbatim
    in the training text, or in the pre-training text of a fine-tuned model: a copy of it, or of a piece of it, under
    another name.  Held-out parts have 0.5-12% (measured 2026-12-02 on a 90/10 cut: the lyrics 3%, Tiny Shakespeare
    12%, songci 0.5%; PTB's test file against its training file 2.5-3.5%).  None when the training text cannot be read;
    ``where`` names it in the note."""
    from .data import pretraining_texts, training_text

    # a line of SEEN_LINE characters, or a run of shorter ones that long (lyrics' lines are short), joined as the
    # training text has them (a model trained with --newlines space: by spaces)
    brk = " " if ckpt.train_config.newlines == "space" else "\n"
    lines, run, joined_any = [], [], False
    for line in text.split("\n"):
        line = line.strip()
        marker = bool(re.fullmatch(SAMPLE_MARKER, line))
        if not line or marker or len(line) >= SEEN_LINE:  # a blank line or generate's marker ends a run, and a long
            run = []  # line is checked by itself
            if line and not marker:
                lines.append(line)
            continue
        run.append(line)
        if len(joined := brk.join(run)) >= SEEN_LINE:
            lines.append(joined)
            joined_any, run = True, []
    lines = [lines[i * len(lines) // most] for i in range(most)] if len(lines) > most else lines
    if len(lines) < 5:  # too few to tell
        return None
    if train_text is None:
        try:
            train_text = _quietly(training_text, ckpt)
        except CharlmError:
            return None
    seen = sum(line in train_text for line in lines)
    if seen * 4 <= len(lines) and ckpt.train_config.init_from:  # learned before the fine-tuning is learned too
        if pre := [t for _, t in _quietly(pretraining_texts, ckpt)[0]]:
            seen, where = sum(line in train_text or any(line in t for t in pre) for line in lines), f"{where} or its pre-training text"
    if seen * 4 <= len(lines):
        return None
    runs = ", shorter ones joined to those after them" if joined_any else ""
    return (f"{seen} of the {len(lines)} lines checked (its lines of {SEEN_LINE} characters or more{runs}{', evenly spread' if len(lines) == most else ''}) "
            f"are in {where} word for word: the figure is {'largely' if seen * 2 > len(lines) else 'partly'} of text the "
            f"model was trained on")


def _figures(loss: float) -> dict:
    """A mean loss in nats per character, and the perplexity and bits per character it makes (an overflowed perplexity
    is inf: null in --json, which writes the report through checkpoint.finite)."""
    from .train import ppl

    return {"loss": loss, "perplexity": ppl(loss), "bits_per_character": loss / math.log(2)}


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _count_of(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _trained_so_far(ckpt) -> dict:
    """The checkpoint's epoch (a fraction part-way through one) and step, as its trainer saved them (a last/ may be
    newer than its last metrics row), for a report that names the model it scored; None where not known (a
    checkpoint whose counts are missing or were edited into something else)."""
    from .data import num_batches

    t, cfg = ckpt.trainer if isinstance(ckpt.trainer, dict) else {}, ckpt.train_config
    epoch, batch, step = (t.get(k) for k in ("epoch", "batch", "step"))
    epoch = epoch if _count_of(epoch) else None
    if epoch is not None and _count_of(batch) and batch:
        try:  # as a validation part-way through an epoch numbers it
            epoch = round(epoch + batch / num_batches(t["train_chars"], cfg.batch_size, cfg.num_steps, cfg.sampling), 3)
            epoch = int(epoch) if epoch == int(epoch) else epoch  # (a last/ written after an epoch's last batch)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            epoch = None
    return {"epoch": epoch, "step": step if _count_of(step) else None}


def _visible(c: str) -> str:
    """A character as a list of them shows it: one that would print as nothing or as a blank (a control character, a
    space, a line separator, a private-use or unassigned one, a lone combining mark) as its code point."""
    return f"U+{ord(c):04X}" if len(c) == 1 and unicodedata.category(c)[0] in "CZM" else c


def _print_eval(report: dict) -> None:
    from .progress import one_line

    ch = report["characters"]
    print(f"{'file' if report['text'] != 'standard input' and not report['text'].startswith('the held-out') else 'text'}: {report['text']}")
    known = ([f"epoch {report['epoch']:g}"] if report["epoch"] is not None else []) + (
        [f"step {report['step']:,}"] if report["step"] is not None else [])
    trained = f"after {', '.join(known)}; " if known else ""
    print(f"model: {report['checkpoint']} ({trained}vocabulary {report['vocabulary']:,}"
          + ("; line breaks read as spaces, as it was trained" if report["newlines"] == "space" else "") + ")")
    shown = " ".join(map(_visible, ch["outside_vocabulary"][:20])) + (" …" if len(ch["outside_vocabulary"]) > 20 else "")
    print(f"characters: {ch['read']:,} read, {ch['scored']:,} scored"
          + (f", {ch['skipped']:,} outside the vocabulary skipped ({shown})" if ch["skipped"] else "")
          + (f", {ch['as_unk']:,} outside the vocabulary read as <unk> ({shown})" if ch["as_unk"] else ""))
    print(f"scoring: {report['how']}")
    if "lines" in report:
        print("line  scored  bits/char  perplexity  text")
        for r in report["lines"]:
            figures = f"{r['bits_per_character']:9.4f}  {r['perplexity']:10.3f}" if r["scored"] else f"{'-':>9}  {'-':>10}"
            marks = [f"{r['skipped']:,} outside the vocabulary skipped"] if r["skipped"] else []
            marks += ["a line it was trained on"] if r.get("in_training_text") else []  # (training or pre-training text)
            print(f"{r['line']:4d}  {r['scored']:6,}  {figures}  {one_line(r['text'])}" + (f"  [{'; '.join(marks)}]" if marks else ""))
    print(f"loss: {report['loss']:.4f} nats/char")
    print(f"perplexity: {report['perplexity']:.3f}")
    print(f"bits per character: {report['bits_per_character']:.4f}")
    if "bigram_perplexity" in report:
        print(f"for scale: a bigram count model of the training text, on the same {ch['scored']:,} characters: "
              f"perplexity {report['bigram_perplexity']:,.3f}")
    for note in report["notes"]:
        print(f"note: {note}")


def cmd_serve(args: argparse.Namespace) -> int:
    # numpy's OpenBLAS (one-sample generation on the CPU) keeps to --threads per request, as torch does
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, args.threads)))
    from .serve import serve

    return serve(args.checkpoint, host=args.host, port=args.port, threads=args.threads, device=args.device,
                 max_prefix=args.max_prefix, max_length=args.max_length, max_lines=args.max_lines,
                 max_samples=args.max_samples, max_text=args.max_text, time_limit=args.time_limit, max_waiting=args.max_waiting,
                 workers=args.workers)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspector import inspect_checkpoint

    summary = inspect_checkpoint(args.checkpoint, text=args.text, file=args.file, encoding=args.encoding,
                                 out=args.out, png=args.png, layer=args.layer, units=args.units,
                                 context=args.context, context_file=args.context_file)
    # the summary goes to stderr when stdout is where the page (or picture) went: --out /dev/stdout > page.html
    print(summary, file=sys.stderr if any(p and _is_stdout(p) for p in (args.out, args.png)) else sys.stdout)
    return 0


def _is_stdout(path: str) -> bool:
    """Whether ``path`` is the file, pipe or terminal this process's standard output writes to."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such file, or a stdout with no descriptor
        return False


class _Parser(argparse.ArgumentParser):
    """An argument error in one line, what was wrong and where the options are (argparse's own prints the whole usage
    first); the commands' parsers are of this class too."""

    def error(self, message: str):
        if message == "the following arguments are required: command":
            message = f"give a command: {', '.join(COMMANDS)}"
        elif (flag := re.fullmatch(r"argument (--[\w-]+): expected (at least )?one argument", message)) and flag[1] in TEXT_FLAGS:
            # (a text that starts with "-" reads as a flag: --prefix -Romeo)
            message += f"; a text that starts with - goes after an = ({flag[1]}=-text)"
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


# the flags whose value is a text of the user's, which may start with "-"
TEXT_FLAGS = {"--prefix", "--style-prefix", "--acrostic", "--text", "--context", "--prefixes"}

COMMANDS = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval, "serve": cmd_serve, "inspect": cmd_inspect}


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, but an unknown flag is reported with the command's name and the nearest real flags."""
    import difflib

    args, extra = parser.parse_known_args(argv)
    if extra:
        given = sys.argv[1:] if argv is None else list(argv)
        if args.command in given and set(extra) & set(given[: given.index(args.command)]):  # before the command: charlm's own options
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        sub = _subparser(parser, args.command)
        for a in sub._actions:  # an optional positional after an option (`eval RUN --json FILE`): argparse fills such a
            # one only from the positionals before the first option, and calls it an unrecognized argument after
            if not a.option_strings and a.nargs == "?" and getattr(args, a.dest) == a.default and extra and (
                    extra[0] == "-" or not extra[0].startswith("-")):
                try:
                    setattr(args, a.dest, sub._get_values(a, [extra.pop(0)]))
                except argparse.ArgumentError as e:
                    sub.error(str(e))
    if extra:
        flags = [f for a in sub._actions for f in a.option_strings if f.startswith("--")]
        near = sorted({m for x in extra if x.startswith("-") for m in difflib.get_close_matches(x.split("=")[0], flags, n=2, cutoff=0.75)})
        sub.error(f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {' or '.join(near)}?)" if near else ""))
    _dashes_as_values(parser, args, sys.argv[1:] if argv is None else [str(a) for a in argv])
    return args


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    """The parser of ``command`` (train, generate, ...); None for none."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.get(command)


def _dashes_as_values(parser: argparse.ArgumentParser, args: argparse.Namespace, given: list[str]) -> None:
    """``--prefix=--``: the value "--", as the flag's type reads it.  Python's argparse (before 3.12.7) drops a "--" given
    after an = as if it ended the options, and hands the flag an empty list: a traceback further on (a list for a
    text), or a flag quietly not given (``--resume=--`` trained the default preset)."""
    end = given.index("--") if "--" in given else len(given)
    dashed = [t[: -len("=--")] for t in given[:end] if t.startswith("--") and t.endswith("=--") and len(t) > len("--=--")]
    if not dashed:
        return
    sub = _subparser(parser, getattr(args, "command", None))
    for p in (parser, sub) if sub is not None else (parser,):
        for a in p._actions:
            if a.option_strings and getattr(args, a.dest, None) == [] and any(o.startswith(d) for o in a.option_strings for d in dashed):
                try:
                    value = p._get_value(a, "--")
                    p._check_value(a, value)
                except argparse.ArgumentError as e:
                    p.error(str(e))
                setattr(args, a.dest, [value] if a.nargs in ("+", "*") else value)


def _named_preset(argv: list[str]) -> str:
    """The preset ``--preset`` names in ``argv``, if it is one (for ``train --preset X --help``), else the default.

    An unknown one with ``--help`` is the error it is without (the help would show another preset's values).
    """
    for i, a in enumerate(argv):
        name = argv[i + 1] if a == "--preset" and i + 1 < len(argv) else a.split("=", 1)[1] if a.startswith("--preset=") else None
        if name in PRESETS:
            return name
        if name is not None and ("-h" in argv or "--help" in argv):
            get_preset(name)  # the one-line error naming the known presets
    return DEFAULT_PRESET


def _notes(show):
    """``warnings.showwarning`` that prints a :class:`CharlmWarning` as one ``note:`` line on stderr, others with ``show``."""

    def note(message, category, *rest):
        if not issubclass(category, CharlmWarning):
            show(message, category, *rest)
        elif os.environ.get("RANK", "0") == "0":  # once, not from every process of a torchrun job
            print(f"note: {message}", file=sys.stderr, flush=True)

    return note


def _usable_streams() -> list[str]:
    """stdout and stderr that take what charlm writes: a closed one writes to /dev/null (a note printed to a missing
    stderr went into stdout), one whose encoding cannot write Chinese (PYTHONIOENCODING=ascii) writes \\uXXXX escapes.
    Returns the names of those that were closed."""
    closed = [name for name in ("stdout", "stderr") if getattr(sys, name) is None]
    for name in closed:
        setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    import codecs

    narrow = []
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            chinese, every = bool("分开".encode(encoding)), codecs.lookup(encoding).name.startswith("utf")
        except (UnicodeEncodeError, LookupError):
            chinese = every = False
        # GBK (output to a file or pipe on a Chinese Windows) writes 分开 but not an emoji a model may write: what an
        # encoding cannot write is escaped, not an error half-way through a text
        if not every and getattr(stream, "errors", "strict") == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
            if not chinese:
                narrow.append(stream.encoding)
    if narrow:
        print(f"note: the output's encoding ({narrow[0]}) cannot write Chinese characters, so they are written as \\u escapes; "
              f"set PYTHONIOENCODING=utf-8 (or a UTF-8 locale) to see them", file=sys.stderr)
    return closed


class _OutputGone:
    """stdout or stderr for a training whose reader went away (``charlm train 2>&1 | head``): the run goes on, its lines
    go nowhere.  Elsewhere a closed pipe ends the command quietly, as ``head`` expects; a training would stop half-way.
    """

    def __init__(self, stream):
        self._stream, self._gone = stream, False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def _went(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):  # Python's flush at exit then finds somewhere to write
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        with contextlib.suppress(OSError, ValueError):  # stderr may be the same closed pipe
            print("note: the output was closed (charlm train | head?); training goes on without printing", file=sys.stderr, flush=True)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Named:
    """stdout or stderr whose failure to write (a full disk: ``charlm train > log`` on one) names the stream: Python's
    own error names no file, and "No space left on device" alone did not say which write it was."""

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        self._named(self._stream.flush)

    def _named(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:  # (a reader that went away: handled as such)
            raise
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), self._name) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    closed = _usable_streams()
    # matplotlib's warnings about its own cache folder (an unwritable HOME) say nothing about the plots charlm draws
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        preset = _named_preset(sys.argv[1:] if argv is None else [str(a) for a in argv])
    except CharlmError as e:
        print(f"charlm: error: {e}", file=sys.stderr)
        return e.exit_code
    parser = build_parser(preset)
    args = _parse(parser, argv)
    if "stdout" in closed and args.command in ("generate", "eval"):  # what they make would go nowhere, and exit 0
        print(f"charlm {args.command}: error: standard output is closed, and it is where {args.command} writes "
              f"(redirect it to a file instead)", file=sys.stderr)
        return 2
    if getattr(args, "encoding", None) is not None and not args.encoding.strip():  # (eval and inspect read '' as not given)
        print(f"charlm: error: unknown encoding {args.encoding!r}", file=sys.stderr)
        return 2
    try:
        with (warnings.catch_warnings(), contextlib.redirect_stdout(_Named(sys.stdout, "standard output")),
              contextlib.redirect_stderr(_Named(sys.stderr, "standard error"))):
            warnings.simplefilter("always", CharlmWarning)
            warnings.showwarning = _notes(warnings.showwarning)
            return COMMANDS[args.command](args)
    except CharlmError as e:
        print(f"charlm: error: {e}", file=sys.stderr)
        if getattr(e, "hard_exit", False):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except ValueError as e:  # a config field out of range
        print(f"charlm: error: {_as_flags(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncharlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        print("charlm: error: out of memory (a model, batch or number of samples too large for this machine)", file=sys.stderr)
        return 1
    except RuntimeError as e:  # torch's allocators say it in words
        if "Numpy is not available" in str(e):  # a torch built for NumPy 1 (before 2.3) beside NumPy 2: .numpy() fails
            import numpy
            import torch

            print(f"charlm: error: torch {torch.__version__} cannot use NumPy {numpy.__version__} (it was built for NumPy 1): "
                  f"pip install 'numpy<2'", file=sys.stderr)
            return 1
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        print(f"charlm: error: out of memory ({str(e).splitlines()[0][:200]}); try smaller settings", file=sys.stderr)
        return 1
    except OSError as e:  # a file the checks before the work could not foresee (a full disk, a permission)
        where = f"{e.filename}: " if e.filename else ""
        print(f"charlm: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
