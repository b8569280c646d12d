"""``artrain fit``: train one family on one dataset, checkpointing into a directory.

The options arrive resolved and checked (``artrain.options.resolve_options``); what is checked here needs
the data and the model: the model config, the training window and the memory of one batch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch.nn.parallel import DistributedDataParallel

from arrun.contract.errors import ARError, UsageError
from arrun.contract.features import mulaw_features

from . import checkpoint as ckpt
from .budget import MEASURE_STEPS, UNPLANNED, Budget
from .conditions import drop_conditions, with_unconditioned
from .data import Dataset, load_dataset, random_windows, window_starts, windows_at
from .distributed import Distributed
from .evaluate import evaluate
from .models import ARModel, build_model, check_outputs, family_call, family_class, make_config
from .options import FitOptions

MAX_MODEL_PARAMETERS = 2_000_000_000


def model_config_for(opts: FitOptions, data: Dataset) -> dict:
    """The family config: the options' fields plus what the data decides (levels, classes, image size)."""
    try:
        cfg = family_class(opts.family).data_config(
            dict(opts.model), levels=data.levels, num_classes=data.num_classes if opts.conditional else 0,
            image_shape=data.image_shape)
        make_config(opts.family, cfg)
        with torch.device("meta"):  # count the parameters without allocating them
            parameters = sum(p.numel() for p in build_model(opts.family, cfg).parameters())
    except (ValueError, TypeError) as e:
        raise UsageError(f"bad model config for {data.name}: {e}") from None
    if parameters > MAX_MODEL_PARAMETERS:
        raise UsageError(f"the {opts.family} config makes {parameters:,} parameters, more than the "
                         f"{MAX_MODEL_PARAMETERS:,} artrain trains; give smaller sizes")
    return cfg


def train_length(opts: FitOptions, data: Dataset, model: ARModel) -> int:
    if data.image_shape is not None:
        return data.image_shape[0] * data.image_shape[1]
    length = opts.seq_len or model.max_length
    if not length:
        raise UsageError("--seq-len is needed for an unbounded model on sequence data")
    if model.max_length and length > model.max_length:
        raise UsageError(f"--seq-len {length} is longer than the model's context of {model.max_length}; give "
                         f"--seq-len {model.max_length} or less, or a larger context in the model config")
    return length


BATCH_MEMORY_LIMIT = 8 << 30  # bytes the logits of one batch (with their gradient) may take


def _check_batch_memory(batch_size: int, length: int, vocab_size: int) -> None:
    need = batch_size * length * vocab_size * 4 * 3  # logits, their softmax and gradient, float32
    if need > BATCH_MEMORY_LIMIT:
        raise UsageError(f"--batch-size {batch_size} of {length} elements with {vocab_size} outputs needs "
                         f"{need / 2**30:,.1f} GiB for the logits alone, more than the {BATCH_MEMORY_LIMIT >> 30} GiB "
                         "artrain allows; give a smaller --batch-size or --seq-len")


def lr_at(step: int, opts: FitOptions) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """One training run: model, optimizer, data stream and RNGs; all of it saved for an exact resume."""

    def __init__(self, opts: FitOptions, out: Path, data: Dataset, ranks: Distributed = Distributed()):
        self.opts, self.out, self.data, self.ranks = opts, Path(out), data, ranks
        self.device = ranks.device(opts.device)
        self.rows = ranks.shard(opts.batch_size)
        if opts.minutes and ranks.grouped:  # TODO: rank 0's plan broadcast to the others
            raise UsageError("--minutes plans the schedule in one process; drop it under torchrun and give --steps")
        torch.manual_seed(opts.seed)
        self.rng = np.random.default_rng(opts.seed)
        self.model = build_model(opts.family, model_config_for(opts, data)).to(self.device)
        self.logits = _SequenceLogits(self.model)
        if ranks.grouped:
            self.logits = DistributedDataParallel(self.logits)
        self.length = train_length(opts, data, self.model)
        _check_batch_memory(opts.batch_size, self.length, self.model.output_width)
        random_windows(data.train, 1, self.length, np.random.default_rng(0))  # UsageError now if the data is too short
        self.spec = self.model.feature_spec
        if self.spec is not None:  # a vocoder: every training clip's frames, computed once
            if data.kind != "audio":
                raise UsageError(f"a model with mel_bins > 0 is a vocoder and trains on audio, not {data.kind} data; "
                                 "drop mel_bins or give audio data")
            self.frames = [mulaw_features(data.train.sequence(i), self.spec, data.levels) for i in range(len(data.train))]
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opts.lr, betas=(0.9, 0.99))
        self.step = 0
        self.best: tuple[float, int, dict] | None = None  # a --minutes run's best (val bits, step, weights)

    def config(self, evaluation: dict | None = None, step: int | None = None) -> dict:
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "family": self.opts.family,
            "model": asdict(self.model.config),
            "data": asdict(ckpt.DataInfo.of(self.data)),
            "train": {**asdict(self.opts), "train_length": self.length},
            "step": self.step if step is None else step,
            "eval": evaluation,
        }

    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """This rank's shard of the global batch: x (B / world, T), labels (B / world,) or None, and for a
        vocoder {"features": the windows' frames (B / world, ceil(T / hop), M)}."""
        split, B, T = self.data.train, self.opts.batch_size, self.length
        seq, start = window_starts(split, B, T, self.rng, align=self.spec.hop if self.spec else 1)
        x = windows_at(split, seq, start, T)  # (B, T)
        cond = None
        if self.model.config.num_classes:
            labels = split.labels[seq]  # (B,)
            if self.opts.condition_dropout:  # drawn for the global batch, so every rank's rng stays in step
                labels = drop_conditions(labels, self.opts.condition_dropout, self.data.unconditioned, self.rng)
            cond = torch.from_numpy(labels[self.rows]).to(self.device)
        features = {}
        if self.spec is not None:
            first, count = start // self.spec.hop, -(-T // self.spec.hop)  # windows start on a frame
            frames = np.stack([self.frames[s][f:f + count] for s, f in zip(seq, first)])  # (B, F, M)
            features["features"] = torch.from_numpy(frames[self.rows]).to(self.device)
        return torch.from_numpy(x[self.rows]).to(self.device), cond, features

    def train_step(self) -> float:
        """One optimizer step; returns the batch loss in bits/dim."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.opts)
        x, cond, features = self.batch()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.opts.device == "cuda"), \
                family_call(self.model, "sequence_logits"):
            outputs = check_outputs(self.model, "sequence_logits", self.logits(x, cond, **features), x.shape)  # (B, T, W)
        loss = self.model.output_nll(outputs.float(), x).mean()
        if not torch.isfinite(loss):
            if not (self.out / ckpt.CONFIG).exists():
                raise ARError(f"the loss became {loss.item()} at step {self.step}, before any checkpoint was saved; "
                              "lower --lr and train again")
            raise ARError(f"the loss became {loss.item()} at step {self.step}; the last good checkpoint is in "
                          f"{self.out}; lower --lr and continue with --resume")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        return self.ranks.mean(loss.detach()).item() / math.log(2)

    def improved(self, val_bits: float) -> bool:
        """Whether the weights just validated are the ones to keep: always, except in a --minutes or --init
        run, which keeps its best validation (a small file overfits within minutes; fine-tuning may only make
        the start worse) and remembers it."""
        if not (self.opts.minutes or self.opts.init):
            return True
        if self.best is not None and val_bits >= self.best[0]:
            return False
        self.best = (val_bits, self.step, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return True

    def load_best(self) -> int | None:
        """Put the kept best weights back in the model when a later evaluation was worse -> their step, or None."""
        if self.best is None or self.best[1] == self.step:
            return None
        self.model.load_state_dict(self.best[2])
        return self.best[1]

    def save(self, evaluation: dict | None = None, *, weights: bool = True) -> None:
        """Checkpoint. trainer.safetensors alone holds everything a resume reads (weights included), so a
        process killed between two file renames still leaves one consistent resume state. ``weights=False``
        writes that resume state alone (model.safetensors and config.json keep a --minutes run's best)."""
        tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        opt_state = self.optimizer.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().clone()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"step": self.step, "param_groups": opt_state["param_groups"], "numpy_rng": self.rng.bit_generator.state}
        ckpt.save_checkpoint(self.out, self.model, self.config(evaluation), tensors, meta, weights=weights)

    def start_from(self, checkpoint: Path) -> None:
        """Fine-tuning: load the weights of ``checkpoint``, whose model config must be the one this run's
        options and data give; UsageError names the first field that differs."""
        theirs, ours = ckpt.read_config(checkpoint)["model"], asdict(self.model.config)
        for name in ours:
            if theirs.get(name) != ours[name]:
                raise UsageError(f"--init {checkpoint} has {name} {theirs.get(name)!r} where this run's data and "
                                 f"options give {ours[name]!r}; give data of the kind the checkpoint was trained on")
        try:
            self.model.load_state_dict(ckpt.read_safetensors(checkpoint / ckpt.WEIGHTS))
        except RuntimeError as e:
            raise UsageError(f"{checkpoint / ckpt.WEIGHTS} does not match its config.json "
                             f"({str(e).strip().splitlines()[-1].strip()[:160]}); give a complete checkpoint") from None

    def restore(self) -> None:
        """Continue from the checkpoint in ``out``: weights, optimizer, RNG states and step."""
        path = self.out / ckpt.TRAINER
        tensors = ckpt.read_safetensors(path)
        try:
            self.model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
            with safe_open(path, "pt") as f:
                meta = json.loads(f.metadata()["trainer"])
            self._restore(tensors, meta)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path} does not match the model in {self.out / ckpt.CONFIG} "
                             f"({str(e).strip().splitlines()[0][:160]}); the checkpoint is mixed, train again") from None

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Optimizer, RNG states and step from the trainer file's tensors and metadata."""
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(self.device) if name != "step" else value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.step = meta["step"]


def fit(opts: FitOptions, out: Path, *, resume: bool = False, log=print) -> dict:
    """Train per ``opts`` into ``out``; returns the final config (with the test-split evaluation).
    Under torchrun every rank trains; rank 0 alone logs, evaluates and writes. KeyboardInterrupt saves a
    checkpoint at the current step and propagates."""
    out = Path(out)
    ranks = Distributed.from_env(opts.device)
    try:
        return _fit(opts, out, resume, log if ranks.is_main else lambda msg: None, ranks)
    finally:
        ranks.close()


def _fit(opts: FitOptions, out: Path, resume: bool, log, ranks: Distributed) -> dict:
    created = prepare_output(out, resume) if ranks.is_main else False
    try:
        return _train(opts, out, resume, log, ranks)
    except BaseException:
        if created and not (out / ckpt.CONFIG).exists():  # nothing worth keeping was written: leave no folder
            shutil.rmtree(out, ignore_errors=True)
        raise


def prepare_output(out: Path, resume: bool) -> bool:
    """Check the output folder (a new or empty folder, or the checkpoint being resumed) and create it ->
    whether it was created. Never writes into a folder of someone's own files."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the checkpoint")
    if out.is_dir() and not resume:
        if (out / ckpt.CONFIG).exists():
            raise UsageError(f"{out} already holds a checkpoint; choose another --out, or continue it with --resume {out}")
        if any(out.iterdir()):
            raise UsageError(f"{out} holds files that are not an artrain checkpoint; give a new or empty folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the folder {out} ({e.strerror}); choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {out}; choose another --out")
    return created


def _train(opts: FitOptions, out: Path, resume: bool, log, ranks: Distributed) -> dict:
    started = time.perf_counter()  # a --minutes budget counts from here
    if not ranks.is_main:
        ranks.barrier()  # rank 0 builds any data cache first
    log(f"loading {opts.data} ...")
    data = load_dataset(opts.data, bits=opts.bits, text_as=opts.text_as)
    data = with_unconditioned(data, opts.condition_dropout if opts.conditional else 0.0, opts.unconditioned_class)
    if ranks.is_main:
        ranks.barrier()
    trainer = Trainer(opts, out, data, ranks)
    if resume:
        trainer.restore()
    elif opts.init:
        trainer.start_from(Path(opts.init))
    metrics = ckpt.MetricsLog(out / ckpt.METRICS) if ranks.is_main else None
    if opts.init and not resume and metrics:  # the starting weights are the first candidate to keep
        _validate(trainer, metrics, "step 0 (the --init weights)")
    budget = None
    if opts.minutes:
        budget = Budget(opts, started=started, step=trainer.step, val_elements=data.val.n_dims,
                        batch_elements=opts.batch_size * trainer.length)
        trainer.opts = budget.opts
    length = (f"{opts.minutes:g} minutes (steps planned from the first {MEASURE_STEPS})" if budget
              else f"{opts.steps} steps")
    log(f"training {opts.family} ({sum(p.numel() for p in trainer.model.parameters()):,} parameters) on {data.name} "
        f"for {length}, batch {opts.batch_size} x {trainer.length} on {ranks.world_size} process(es), "
        f"from step {trainer.step}")
    try:
        _loop(trainer, metrics, budget)
    except KeyboardInterrupt:
        if metrics:
            trainer.save(weights=trainer.best is None)
        raise
    evaluation, best_step = None, None
    if metrics:
        best_step = trainer.load_best()
        if best_step is not None:
            log(f"kept the weights of step {best_step} (val {trainer.best[0]:.4f} bits/dim), the best validation; "
                f"later steps overfit (the resume state is step {trainer.step}'s)")
        result = evaluate(trainer.model, data.test)
        evaluation = {"split": "test", **asdict(result), "data": data.name}
        metrics.write(event="test", step=trainer.step if best_step is None else best_step, **asdict(result))
        if best_step is None:
            trainer.save(evaluation)
        else:  # the best weights and their config; trainer.safetensors stays the last step's resume state
            ckpt.save_checkpoint(out, trainer.model, trainer.config(evaluation, best_step))
        log(f"test: {result.bits_per_dim:.4f} bits/dim over {result.n_dims:,} dims; checkpoint in {out}")
    ranks.barrier()
    return trainer.config(evaluation, best_step)


def _loop(trainer: Trainer, metrics: ckpt.MetricsLog | None, budget: Budget | None = None) -> None:
    """Train to trainer.opts.steps (a ``budget`` re-plans it as it goes); on rank 0 (``metrics`` given) log,
    evaluate and checkpoint along the way. On a terminal a progress bar shows the (smoothed) rate and ETA;
    otherwise a line every PROGRESS_EVERY s."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    opts = trainer.opts
    console = Console(stderr=True)
    columns = (TextColumn("fit"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, transient=False, disable=metrics is None or not console.is_terminal, console=console) as bar:
        task = bar.add_task("fit", total=None if budget else opts.steps, completed=trainer.step, info="")
        report = _LineReport(trainer.step, opts.steps, enabled=metrics is not None and not console.is_terminal)
        if budget:
            budget.start(time.perf_counter())
        with _StopAtStepBoundary() as stop:
            while trainer.step < trainer.opts.steps:
                if stop.requested:
                    raise KeyboardInterrupt
                bits = trainer.train_step()
                if budget:
                    trainer.opts = budget.step_done(trainer.step, time.perf_counter())
                    report.total = trainer.opts.steps
                    bar.update(task, total=trainer.opts.steps if trainer.opts.steps < UNPLANNED else None)
                report(trainer.step, bits)
                due = budget.evaluation_due(trainer.step) if budget else None
                seconds = _after_step(trainer, metrics, bar, task, bits, report.rate, due)
                if budget and seconds:
                    trainer.opts = budget.evaluation_done(trainer.step, seconds, time.perf_counter())


PROGRESS_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal


class _LineReport:
    """Progress as plain lines (step, loss, steps/s, ETA) for logs and pipes: the first step, then every
    PROGRESS_EVERY seconds, then the last step."""

    def __init__(self, first: int, total: int, enabled: bool):
        self.first, self.total, self.enabled = first, total, enabled
        self.started = self.last = time.perf_counter()
        self.rate = 0.0

    def __call__(self, step: int, bits: float) -> None:
        now = time.perf_counter()
        self.rate = (step - self.first) / max(now - self.started, 1e-9)
        if self.enabled and (step == self.first + 1 or step == self.total or now - self.last >= PROGRESS_EVERY):
            self.last = now
            eta = (self.total - step) / self.rate if self.rate else 0.0
            total, eta = ("?", "planning") if self.total >= UNPLANNED else (self.total, f"{eta / 60:.1f} min")
            print(f"step {step}/{total}: loss {bits:.3f} bits/dim, {self.rate:.1f} steps/s, "
                  f"ETA {eta}", file=sys.stderr, flush=True)


def _after_step(trainer: Trainer, metrics: ckpt.MetricsLog | None, bar, task, bits: float, rate: float,
                due: bool | None = None) -> float:
    """Rank 0 logs, evaluates and checkpoints on schedule (every eval_every steps and at the end, or when
    ``due`` says so); the other ranks wait for it at the barrier. Returns the seconds the evaluation and
    checkpoint took (0.0 when there was none)."""
    opts, step, began = trainer.opts, trainer.step, time.perf_counter()
    evaluated = False
    if metrics is not None:
        bar.update(task, completed=step, info=f"loss {bits:.3f} bits/dim  {rate:.1f} steps/s")
        if step % 10 == 0:
            metrics.write(event="train", step=step, bits_per_dim=bits, lr=lr_at(step - 1, opts))
        if due if due is not None else step % opts.eval_every == 0 or step == opts.steps:
            _validate(trainer, metrics, f"step {step}")
            evaluated = True
    if step % opts.eval_every == 0:
        trainer.ranks.barrier()  # the other ranks wait while rank 0 evaluates and saves
    return time.perf_counter() - began if evaluated else 0.0


def _validate(trainer: Trainer, metrics: ckpt.MetricsLog, what: str) -> None:
    """Score the validation split, log it, and checkpoint (the weights too when they are the ones to keep)."""
    result = evaluate(trainer.model, trainer.data.val)
    metrics.write(event="val", step=trainer.step, **asdict(result))
    print(f"{what}: val {result.bits_per_dim:.4f} bits/dim", file=sys.stderr, flush=True)
    trainer.save(weights=trainer.improved(result.bits_per_dim))


class _StopAtStepBoundary:
    """Ctrl-C (SIGINT) or SIGTERM during training is deferred to the end of the current step, so the
    checkpoint saved on interrupt is a consistent state a resume continues exactly; a second one stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


class _SequenceLogits(torch.nn.Module):
    """model.sequence_logits as a forward, the call DistributedDataParallel hooks."""

    def __init__(self, model: ARModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, **features) -> torch.Tensor:
        return self.model.sequence_logits(x, cond, **features)
