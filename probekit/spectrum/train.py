"""`SpectrumTrainer`: train one spectrum model on a task's world, measuring collapse as it goes.

Training episodes are drawn from the task's world (its train-split knobs) with the run's own
seed, never from the task's probe splits; a held-out draw gives the effective rank of the
latents at every log step and, at the end, a quick linear probe of the world state against the
random-init twin (the same architecture with the run's initial weights).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from probekit.adapters.base import Batch, resolve_device
from probekit.adapters.module import encode
from probekit.adapters.spectrum import encode_frames
from probekit.errors import ModelError, UserError
from probekit.spectrum import checkpoint
from probekit.spectrum.collapse import CollapseMonitor
from probekit.spectrum.model import INPUTS, SpectrumConfig, SpectrumModel, init_model
from probekit.spectrum.objective import Objective, SpectrumLoss
from probekit.tasks import Task, load_task
from probekit.worlds import World
from probekit.worlds.render import attach


@dataclass
class Episodes:
    """Episodes as model inputs (right-padded, with step positions) and labels [N, S, targets]."""

    batch: Batch
    labels: np.ndarray

    @property
    def x(self) -> torch.Tensor:
        return next(iter(self.batch.inputs.values()))

    @property
    def mask(self) -> torch.Tensor:
        return self.batch.inputs["attention_mask"]


def draw(task: Task, world: World, n: int, seed: int, stream: int, inputs: str) -> Episodes:
    """`n` episodes of `world` from the generator (seed, stream, task fingerprint); on frames
    rendered with the task's frame knobs."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, int(task.fingerprint, 16)]))
    eps = [world.episode(rng) for _ in range(n)]
    labels = np.stack([np.stack([np.asarray(e.labels[t.name], dtype=np.float64)
                                 for t in task.targets], -1) for e in eps])
    if inputs == "frames":
        assert task.spec.frames is not None  # checked by `SpectrumTrainer.fit`
        attach(world, eps, task.spec.frames)
        return Episodes(encode_frames([{"frames": e.frames, "step_spans": e.step_spans}
                                       for e in eps], task.spec.frames["frames_per_step"]),
                        labels)
    rows = [{"tokens": e.tokens, "token_steps": e.token_steps, "obs": e.obs, "text": e.text,
             "step_spans": e.step_spans, "query_span": e.query_span} for e in eps]
    return Episodes(encode(rows, inputs), labels)

LOSSES = ("token", "pixel", "latent", "vicreg", "total")


class SpectrumTrainer:
    """Trains a `SpectrumModel` with L(a) = (1 − a)·CE + a·L_latent (see `Objective`).

    The quick probe is fit on `probe_episodes` held-out episodes (half as many each choose its
    layer and score it). Parameters are kept as given and checked by `fit`, which sets
    `model_`, `meta_`, `history_` (one record per log step: mean loss terms, EMA momentum,
    effective rank) and `collapse_` (the final `CollapseReport`).

    `device` is where the optimisation runs ("cpu", "cuda", "cuda:N" or "auto"); the episodes,
    the initial weights, the batch draws and the quick probe stay on the CPU, so a run is the
    same run on any device. On the CPU it is reproducible bit for bit; on a GPU only to float
    tolerance (its kernels sum in no fixed order). The fitted model is returned on the CPU.
    """

    def __init__(self, alpha: float = 0.0, *, horizon: int = 1, target: str = "next",
                 vicreg: float = 0.0, ema: tuple[float, float] = (0.99, 0.999),
                 inputs: str = "tokens", d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 d_ff: int = 128, steps: int = 1500, batch_size: int = 32, lr: float = 3e-3,
                 weight_decay: float = 0.01, episodes: int = 4000, probe_episodes: int = 200,
                 seed: int = 0, log_every: int = 100, min_rank: float = 0.05,
                 min_spread: float = 0.05, device: str = "cpu", progress: bool = True):
        self.alpha, self.horizon, self.target, self.vicreg = alpha, horizon, target, vicreg
        self.ema, self.inputs = ema, inputs
        self.d_model, self.n_layers, self.n_heads, self.d_ff = d_model, n_layers, n_heads, d_ff
        self.steps, self.batch_size, self.lr, self.episodes = steps, batch_size, lr, episodes
        self.weight_decay, self.probe_episodes = weight_decay, probe_episodes
        self.seed, self.log_every, self.progress = seed, log_every, progress
        self.min_rank, self.min_spread = min_rank, min_spread
        self.device = device

    def objective(self) -> Objective:
        return Objective(self.alpha, self.horizon, self.target, self.vicreg, tuple(self.ema))

    def fit(self, task: Task | str, include: Iterable[str | Path] = ()) -> SpectrumTrainer:
        objective = self._checked()
        device = resolve_device(self.device)
        task = load_task(task, include) if isinstance(task, str) else task
        if self.inputs == "frames" and task.spec.frames is None:
            raise UserError(f"--inputs frames needs a task with frames; task {task.name} "
                            "declares none (use a *-frames task, e.g. balls-2-frames)")
        world = task.spec.world_for("train")
        t0 = time.perf_counter()
        data = draw(task, world, self.episodes, self.seed, 0, self.inputs)
        sizes = {"train": self.probe_episodes, "val": max(1, self.probe_episodes // 2),
                 "test": max(1, self.probe_episodes // 2)}
        probe = {s: draw(task, world, n, self.seed, i + 1, self.inputs)
                 for i, (s, n) in enumerate(sizes.items())}
        model = init_model(self._config(world, data), self.seed)
        twin = copy.deepcopy(model).eval()  # the random-init twin: the run's initial weights
        monitor = CollapseMonitor(self.min_rank, self.min_spread)
        history = self._train(model, objective, data, probe["test"], monitor,
                              f"train {task.name} a={objective.alpha:g}", device)
        model.cpu()
        report = monitor.check(_latents(model, probe["test"]), quick_probe(model, task, probe),
                               quick_probe(twin, task, probe))
        self.model_, self.history_, self.collapse_ = model.eval(), history, report
        self.meta_ = checkpoint.SpectrumMeta(
            family=objective.station, alpha=float(objective.alpha), horizon=objective.horizon,
            target=objective.target, vicreg=float(objective.vicreg),
            ema=[float(e) for e in objective.ema], world=world.name, knobs=dict(world.params),
            task=task.name, task_fingerprint=task.fingerprint, steps=self.steps,
            seed=self.seed, batch_size=self.batch_size, lr=float(self.lr),
            weight_decay=float(self.weight_decay), episodes=self.episodes,
            train_seconds=round(time.perf_counter() - t0, 1),
            final={k: float(v) for k, v in history[-1].items() if k in LOSSES},
            collapse=report.as_dict(), device=device.type, history=history)
        return self

    def _checked(self) -> Objective:
        """The objective, after every parameter is checked (before any work is done)."""
        objective = self.objective()
        if self.inputs not in INPUTS:
            raise UserError(f"inputs {self.inputs!r} is not valid; valid: {', '.join(INPUTS)}")
        if self.inputs == "obs" and objective.alpha < 1:  # frames: a pixel head instead
            raise ModelError(f"alpha {objective.alpha:g} trains a token head, and a token head "
                             "was asked of a continuous-only model (inputs='obs'); use "
                             "inputs='tokens' or alpha 1")
        for name in ("steps", "batch_size", "episodes", "log_every", "probe_episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise UserError(f"lr must be positive and weight_decay at least 0, got lr {self.lr}, "
                            f"weight_decay {self.weight_decay}")
        return objective

    def _train(self, model: SpectrumModel, objective: Objective, data: Episodes,
               held_out: Episodes, monitor: CollapseMonitor, desc: str,
               device: torch.device) -> list[dict[str, float]]:
        """The optimisation loop; returns one record per log step (mean loss terms since the
        last record, EMA momentum, effective rank and spread of the held-out latents)."""
        from probekit.progress import phase

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            loss_fn = SpectrumLoss(model, objective)  # drawn on the CPU, as on any device
        loss_fn.to(device)  # the model, its predictor and the EMA target
        params = [p for p in loss_fn.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = schedule(opt, self.lr, self.steps)
        gen = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, float]] = []
        sums: dict[str, float] = {}
        count = 0
        bar = phase("train", desc, total=self.steps, unit="steps", show=self.progress)
        bar.summary = f"{self.steps} steps"
        for step in bar.wrap(range(self.steps)):
            model.train()
            idx = torch.randint(len(data.x), (self.batch_size,), generator=gen)
            mask = data.mask[idx]
            T = int(mask.sum(1).max())
            terms = loss_fn(data.x[idx][:, :T].to(device), mask[:, :T].to(device))
            if not torch.isfinite(terms["total"]):
                raise UserError(f"training diverged at step {step + 1} (the loss is not "
                                f"finite); lower lr (now {self.lr:g}) or weight_decay")
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            momentum = objective.momentum(step + 1, self.steps)
            loss_fn.update_target(momentum)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
            if (step + 1) % self.log_every == 0 or step + 1 == self.steps:
                health = monitor.check(_latents(model, held_out))
                history.append({"step": step + 1, **{k: v / count for k, v in sums.items()},
                                "momentum": momentum if objective.alpha > 0 else None,
                                "effective_rank": health.effective_rank,
                                "spread": health.spread})
                sums, count = {}, 0
                bar.summary = f"{step + 1} steps, " + ", ".join(
                    f"{k} {v:.3f}" for k, v in history[-1].items()
                    if k in ("token", "latent", "effective_rank") and v is not None)
            bar.update()
        keep_predictor(model, loss_fn)
        return history

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model as a spectrum checkpoint folder."""
        if not hasattr(self, "model_"):
            raise UserError("call fit(task) before save(folder)")
        return checkpoint.save(folder, self.model_, self.meta_)

    def _config(self, world: World, data: Episodes) -> SpectrumConfig:
        longest = int(data.mask.sum(1).max())
        frames = self.inputs == "frames"
        return SpectrumConfig(
            inputs=self.inputs,
            vocab_size=len(world.vocabulary()) if self.inputs == "tokens" else 0,
            obs_dim=int(data.x.shape[-1]) if self.inputs == "obs" else 0,
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, d_ff=self.d_ff,
            max_len=max(32, 2 ** math.ceil(math.log2(2 * longest))),
            token_head=self.alpha < 1 and not frames, horizon=self.horizon,
            frame_channels=int(data.x.shape[2]) if frames else 0,
            frame_size=int(data.x.shape[-1]) if frames else 0,
            pixel_head=self.alpha < 1 and frames)


def keep_predictor(model: SpectrumModel, loss_fn: SpectrumLoss) -> None:
    """Move the trained latent predictor into the model (its checkpoint then keeps it, and the
    model has a latent surprise) where it predicts the next latent: alpha > 0, horizon 1."""
    if loss_fn.objective.alpha > 0 and loss_fn.objective.horizon == 1:
        model.config = dataclasses.replace(model.config, predictor=True)
        model.predictor = loss_fn.predictor


def schedule(opt: torch.optim.Optimizer, lr: float, steps: int
             ) -> torch.optim.lr_scheduler.LRScheduler:
    """One cycle: warm up over the first tenth (at least two steps), then anneal; runs too
    short for a cycle keep `lr`."""
    if steps < 3:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                               pct_start=max(0.1, 2 / steps))


@torch.no_grad()
def _latents(model: SpectrumModel, episodes: Episodes) -> torch.Tensor:
    """The model's final latents at every real position [N, d], on the CPU."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    z = model.latents(episodes.x.to(device))[episodes.mask.bool().to(device)]
    model.train(was)
    return z.cpu()


@torch.no_grad()
def step_latents(model: SpectrumModel, episodes: Episodes) -> np.ndarray:
    """Every layer's latents at the step positions, [L, N, S, d]."""
    hs = model.eval().hidden_states(episodes.x)
    rows = torch.arange(len(episodes.x))[:, None]
    pos = episodes.batch.positions
    return torch.stack([h[rows, pos] for h in hs]).numpy()


def quick_probe(model: SpectrumModel, task: Task, probe: dict[str, Episodes]) -> float:
    """The decodability headline (normalised late test score, layer chosen on val) of a
    `DecodabilityProbe` on small held-out draws, without control task or MDL: the same probes,
    depths and rule for constant targets as `evaluate`."""
    from probekit.decodability import DecodabilityProbe, Labels

    labels = Labels(task.name, tuple(task.targets), {s: e.labels for s, e in probe.items()},
                    chance=Labels.task_chance(task))
    latents = {s: step_latents(model, e) for s, e in probe.items()}
    with warnings.catch_warnings():  # a quick probe need not converge to the last digit
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = DecodabilityProbe(control=False, mdl=False, device="cpu",
                                   progress=False).run(latents, labels)
    value = result.scores()["value"]
    return float("nan") if value is None else value
