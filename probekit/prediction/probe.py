"""`PredictionProbe`: does a model expect what its world does?

Violation of expectation (IntPhys, V-JEPA): every violation pair of a task is one base episode
edited twice at the same step, once legally (`possible`) and once against the world's rules
(`impossible`), so token frequency and edit size are matched. The model reads both; its
surprise per step (`Adapter.surprise`: token surprisal in nats, or latent prediction error) is
compared within the pair: at the violating step, and over the steps from it on (the mean over
those steps, which ranks a pair exactly as their sum does). VoE accuracy is the share of pairs
where the impossible episode is the more surprising one (a tie counts half, so a model blind
to the state scores 0.5; ties are reported), with a Clopper–Pearson interval; AUROC ranks
every impossible episode against every possible one by the same from-the-step-on surprise
(ties half).

Next-step legality (Othello-GPT): for token models on worlds that declare legality (`legal.*`
labels), the share of the possible episodes' steps at which the model's top-1 next token is a
legal next step, over the steps where some step is legal.

A pair whose two episodes reach the model as inputs that differ only at the first position
(an edit of an episode's first step, read by a model without a start token) cannot be scored:
nothing before that position predicts it; nor can one whose inputs do not differ at all (a
tokenizer that reads both edits as the same tokens). Such pairs are dropped and counted
(`dropped`: `first_position`, `same_inputs`).

Every run checks itself and stops with a `CheckError` when a check fails: each pair's episodes
must be identical before the violating step and differ at it; the model's surprise must be the
same on both up to that step (they share every input there, so a causal, deterministic model
cannot tell them apart); and the first batch run twice must give the same surprise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probekit.adapters.base import Adapter
from probekit.adapters.surprise import KINDS
from probekit.errors import CheckError, DataError, ModelError, UnknownNameError, UserError
from probekit.prediction.result import Measured, PredictionResult
from probekit.tasks import Task, rows_of

SURPRISES = ("auto", *KINDS)
CHECK_TOL = 1e-3  # |possible − impossible| surprise before the step, relative to 1 + |possible|


class PredictionProbe:
    """Violation of expectation and next-step legality of one model on one task (see the module
    docstring).

    surprise: "auto" (every surprise the model defines; the headline is the token surprise
    where the model has a token head, else the latent one), "token" or "latent" (only that
    one; an error where the model lacks it). split: where the violation pairs come from.
    max_pairs: pairs drawn (seeded) from the split, all when it has fewer. legality: also score
    next-step legality where the world declares it. tolerance: the identical-prefix check's
    bound on |Δ surprise| / (1 + |surprise|).
    """

    def __init__(self, *, surprise: str = "auto", split: str = "test", max_pairs: int = 500,
                 batch_size: int = 32, legality: bool = True, tolerance: float = CHECK_TOL,
                 seed: int = 0, progress: bool = False):
        self.surprise, self.split, self.max_pairs = surprise, split, max_pairs
        self.batch_size, self.legality, self.tolerance = batch_size, legality, tolerance
        self.seed, self.progress = seed, progress

    # --- configuration ----------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse bad settings (UserError) before any work; `run` calls it first."""
        if self.surprise not in SURPRISES:
            raise UnknownNameError("surprise", str(self.surprise), SURPRISES)
        if not isinstance(self.split, str) or not self.split:
            raise UserError(f"split must be a split name such as 'test', got {self.split!r}")
        for name in ("max_pairs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.max_pairs < 2:
            raise UserError(f"max_pairs must be at least 2, got {self.max_pairs}")
        if not isinstance(self.legality, bool):
            raise UserError(f"legality must be True or False, got {self.legality!r}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not 0 < self.tolerance < 1:
            raise UserError(f"tolerance must be in (0, 1), got {self.tolerance!r}")

    def config(self) -> dict[str, Any]:
        """The settings that decide the numbers (recorded in the result's identity)."""
        return {"surprise": self.surprise, "split": self.split, "max_pairs": self.max_pairs,
                "legality": self.legality, "seed": self.seed}

    # --- the run ----------------------------------------------------------------------------

    def run(self, adapter: Adapter, task: Task, *, twin: Adapter | None = None
            ) -> PredictionResult:
        """Measure `adapter` (and its random-init `twin`, when given) on `task`'s violation
        pairs. A task without violation pairs, or a model without a surprise, gives a result
        whose `scores()` is None and whose `reason()` says why."""
        self.validate()
        config = self.config()
        kinds = self._kinds(adapter)
        if task.spec.violations is None:
            from probekit.worlds import WORLDS

            why = WORLDS.get(task.spec.world).no_violations
            return PredictionResult.empty(task.name, config, f"task {task.name} has no "
                                          f"violation pairs" + (f" ({why})" if why else ""))
        if not kinds:
            ident = adapter.identity
            note = " (this spectrum checkpoint keeps no latent predictor: one is kept at " \
                "horizon 1 only, by checkpoints trained since probekit kept it; retrain it)" \
                if ident.adapter == "spectrum" and (ident.alpha or 0) > 0 else ""
            return PredictionResult.empty(task.name, config, f"model {ident.id} has neither a "
                                          "token head nor a latent predictor, so it defines no "
                                          f"surprise{note}")
        if twin is not None and set(kinds) - set(twin.surprise_kinds()):
            raise CheckError(f"the random-init twin of {adapter.identity.id} lacks the "
                             f"{' and '.join(sorted(set(kinds) - set(twin.surprise_kinds())))} "
                             "surprise of its model")
        pairs = self._pairs(task)
        legal = self._legality(adapter, task, kinds)
        measured: dict[str, dict[str, Measured]] = {}
        checks: dict[str, Any] = {"pairs_checked": len(pairs["step"])}
        for name, model in (("model", adapter), ("random_init", twin)):
            if model is None:
                continue
            for kind in kinds:
                out = self._measure(model, pairs, kind,
                                    legal if kind == "token" and legal["ids"] is not None
                                    else None)
                measured.setdefault(kind, {})[name] = out
                checks[f"{name}.{kind}.max_prefix_diff"] = out.max_prefix_diff
                checks[f"{name}.{kind}.repeat_max_diff"] = out.repeat_max_diff
        legal_reason = legal["reason"] if "token" in kinds else (
            "legality is read from next-token predictions; this model predicts latents only")
        first = np.min([m.first for runs in measured.values() for m in runs.values()], 0)
        keep = first >= 1
        dropped = {why: int(n) for why, n in (("first_position", (first == 0).sum()),
                                               ("same_inputs", (first < 0).sum())) if n}
        if keep.sum() < 2:
            return PredictionResult.empty(task.name, config, f"{int(keep.sum())} of the "
                                          f"{len(keep)} violation pairs can be scored: the "
                                          "model's inputs of the two episodes are the same, or "
                                          "differ only at the first position, which nothing "
                                          "before it predicts")
        for runs in measured.values():
            for m in runs.values():
                m.possible, m.impossible = m.possible[keep], m.impossible[keep]
        return PredictionResult(task=task.name, split=self.split, kinds=kinds,
                                measured=measured, step=pairs["step"][keep],
                                violation=[v for v, k in zip(pairs["kind"], keep) if k],
                                drawn=pairs["drawn"], dropped=dropped,
                                legal_reason=legal_reason, config=config, checks=checks)

    def _kinds(self, adapter: Adapter) -> list[str]:
        have = list(adapter.surprise_kinds())
        if self.surprise == "auto":
            return have
        if self.surprise not in have:
            raise ModelError(f"model {adapter.identity.id} defines no {self.surprise} surprise "
                             f"(it has: {', '.join(have) or 'none'}); use surprise='auto'"
                             + (f" or {have[0]!r}" if have else ""))
        return [self.surprise]

    def _pairs(self, task: Task) -> dict[str, Any]:
        """The drawn violation pairs of the split (seeded), each checked: identical before the
        step, different at it."""
        table = task.violations(self.split)  # UserError for an unknown split
        if len(table) < 2:
            raise DataError(f"task {task.name}, split {self.split}: {len(table)} violation "
                            "pair(s); VoE needs at least 2 — use a larger split")
        order = np.sort(np.random.default_rng(self.seed).permutation(len(table))[:self.max_pairs])
        rows = rows_of(table, order)
        possible, impossible = [], []
        for i, row in zip(order.tolist(), rows):
            p = {k[len("possible."):]: v for k, v in row.items() if k.startswith("possible.")}
            q = {k[len("impossible."):]: v for k, v in row.items()
                 if k.startswith("impossible.")}
            _check_pair(task.name, self.split, i, int(row["step"]), p, q)
            possible.append(p)
            impossible.append(q)
        return {"possible": possible, "impossible": impossible, "drawn": len(table),
                "step": np.asarray([int(r["step"]) for r in rows]),
                "kind": [str(r["kind"]) for r in rows]}

    def _legality(self, adapter: Adapter, task: Task, kinds: list[str]) -> dict[str, Any]:
        """The `legal.*` step words and their token ids, or the reason there are none."""
        none = {"ids": None, "words": None}
        if "token" not in kinds:
            return {**none, "reason": None}
        if not self.legality:
            return {**none, "reason": "legality was not asked for (legality=False)"}
        columns = task.violations(self.split).column_names
        words = sorted(c[len("possible.label.legal."):] for c in columns
                       if c.startswith("possible.label.legal."))
        if not words:
            return {**none, "reason": f"world {task.spec.world} declares no next-step legality "
                                      "(no legal.* labels)"}
        vocabulary = task.spec.world_for(self.split).vocabulary()
        missing = [w for w in words if w not in vocabulary]
        if missing:
            raise DataError(f"task {task.name}: legal.{missing[0]} names no word of the world's "
                            "vocabulary, so the model's next step cannot be compared with it")
        ids = adapter.word_ids(words, vocabulary)
        if len(set(ids)) != len(ids):
            seen: dict[int, str] = {}
            for w, i in zip(words, ids):
                if i in seen:
                    return {**none, "reason": f"the tokenizer of {adapter.identity.id} starts "
                                              f"the steps {seen[i]!r} and {w!r} with the same "
                                              "token, so a top-1 next token names no one step"}
                seen[i] = w
        return {"ids": torch.as_tensor(ids), "words": words, "reason": None}

    def _measure(self, model: Adapter, pairs: dict[str, Any], kind: str,
                 legal: dict[str, Any] | None) -> Measured:
        """Surprise [N, S] of every pair's two episodes, checked, and legality hits."""
        from probekit.progress import phase

        n = len(pairs["step"])
        half = max(1, self.batch_size // 2)
        surprise = {"possible": [], "impossible": []}
        firsts, shared = [], []
        hits = steps = 0
        repeat = 0.0
        bar = phase("prediction", f"{kind} surprise of {model.identity.id}", total=n,
                    unit="pairs", show=self.progress)
        bar.summary = f"{n} violation pairs × 2 episodes, {kind} surprise"
        for lo in bar.wrap(range(0, n, half)):
            hi = min(n, lo + half)
            rows = pairs["possible"][lo:hi] + pairs["impossible"][lo:hi]
            batch = model.batch(rows)
            out = model.step_predictions(batch, kind)
            if lo == 0:  # the same inputs twice: the same surprise
                again = model.step_predictions(batch, kind).surprise
                repeat = _rel_diff(out.surprise, again)
                if repeat > self.tolerance:
                    raise CheckError(f"the {kind} surprise of {model.identity.id} differs "
                                     f"between two runs of the same batch (by {repeat:.2g}, "
                                     f"relative); surprise must be deterministic — put the "
                                     "model in eval mode (no dropout)")
            k = hi - lo
            step = torch.as_tensor(np.asarray(pairs["step"][lo:hi]), dtype=torch.long)
            until = batch.positions[:k].gather(1, step[:, None])[:, 0].numpy()
            first, later = _first_difference(batch.inputs, k, until)
            firsts.append(np.where(later, 1, first))  # 1: scorable; 0, -1: why not
            # steps whose inputs all come before the first difference: the same for both
            ends = batch.positions[:k].numpy()
            shared.append(np.where(first[:, None] >= 0, ends < first[:, None], True).sum(1))
            surprise["possible"].append(out.surprise[:k])
            surprise["impossible"].append(out.surprise[k:])
            if legal is not None:
                h, s = _legal_hits(out.top1[:k], pairs["possible"][lo:hi], legal)
                hits, steps = hits + h, steps + s
            bar.update(k)
        pos = torch.cat(surprise["possible"]).numpy()
        imp = torch.cat(surprise["impossible"]).numpy()
        prefix = _prefix_check(model, kind, pos, imp, np.concatenate(shared), pairs["step"],
                               self.tolerance)
        return Measured(possible=pos, impossible=imp, first=np.concatenate(firsts),
                        legal_hits=hits if legal else None,
                        legal_steps=steps if legal else None, max_prefix_diff=prefix,
                        repeat_max_diff=repeat)


def _first_difference(inputs: dict[str, torch.Tensor], k: int,
                      until: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (rows i and k + i of a batch), the first input position where the model's
    inputs differ (-1: nowhere), and whether they differ after position 0 and at most at
    position `until[i]` (the violating step's last input): a difference at position 0 alone
    cannot surprise, nothing comes before it, and a difference only in later steps is a
    consequence of the violation, not the violation."""
    differ = None
    for name, x in inputs.items():
        if name == "attention_mask":
            continue
        d = (x[:k] != x[k:2 * k]).reshape(k, x.shape[1], -1).any(-1)  # [k, T]
        differ = d if differ is None else differ | d
    first = torch.where(differ.any(1), differ.float().argmax(1).long(),
                        torch.full((k,), -1, dtype=torch.long))
    if until is not None:
        cols = torch.arange(differ.shape[1])[None, :]
        differ = differ & (cols <= torch.as_tensor(until, dtype=torch.long)[:, None])
    return first.numpy(), differ[:, 1:].any(1).numpy()


def _rel_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float((np.abs(a - b) / (1 + np.abs(a))).max())


def _prefix_check(model: Adapter, kind: str, pos: np.ndarray, imp: np.ndarray,
                  shared: np.ndarray, step: np.ndarray, tol: float) -> float:
    """The largest relative surprise difference over the `shared` first steps of each pair
    (those whose model inputs all come before the pair's first differing input: every step
    before the violating one, unless a tokenizer merges across the step boundary); a
    CheckError over `tol`: both episodes share every input there."""
    S = pos.shape[1]
    before = np.arange(S)[None, :] < np.minimum(shared, step)[:, None]
    if not before.any():
        return 0.0
    diff = np.where(before, np.abs(pos - imp) / (1 + np.abs(pos)), 0.0)
    worst = float(diff.max())
    if worst > tol:
        i, s = np.unravel_index(int(diff.argmax()), diff.shape)
        raise CheckError(f"the {kind} surprise of {model.identity.id} differs between the "
                         f"possible and impossible episodes of pair {i} at step {s}, before the "
                         f"violating step {int(step[i])} (by {worst:.2g}, relative): the two "
                         "share every input there, so the model reads later inputs "
                         "(bidirectional) or is not deterministic; prediction needs a causal "
                         "model")
    return worst


def _legal_hits(top1: torch.Tensor, rows: list[dict[str, Any]], legal: dict[str, Any]
                ) -> tuple[int, int]:
    """Steps whose top-1 next token is a legal step's, over steps with a legal step."""
    words, ids = legal["words"], legal["ids"]
    table = torch.as_tensor([[r[f"label.legal.{w}"] for w in words] for r in rows])  # [B, W, S]
    if (table < 0).any():
        raise CheckError("a possible episode of a violation pair has undefined legal.* labels; "
                         "possible episodes follow the world's rules at every step")
    allowed = table.transpose(1, 2).bool()  # [B, S, W]
    chosen = top1[:, :, None] == ids[None, None, :]  # [B, S, W]
    scored = allowed.any(-1)
    hit = (chosen & allowed).any(-1) & scored
    return int(hit.sum()), int(scored.sum())


def _check_pair(task: str, split: str, index: int, step: int, p: dict[str, Any],
                q: dict[str, Any]) -> None:
    """A violation pair must differ only from its step on: the same number of steps, identical
    text, world tokens and observations before the step, and different text at it."""
    where = f"task {task}, split {split}, violation pair {index}"
    S = len(p["step_spans"])
    if len(q["step_spans"]) != S or not 0 <= step < S:
        raise CheckError(f"{where}: the episodes have {S} and {len(q['step_spans'])} steps, the "
                         f"violating step is {step}; a pair aligns step for step")
    cut = p["step_spans"][step][0]
    if p["step_spans"][:step] != q["step_spans"][:step] or p["text"][:cut] != q["text"][:cut]:
        raise CheckError(f"{where}: the possible and impossible texts differ before the "
                         f"violating step {step}; a pair may differ only from its step on")
    first = p["token_steps"][step - 1] + 1 if step > 0 else 0
    if p["tokens"][:first] != q["tokens"][:first]:
        raise CheckError(f"{where}: the world tokens differ before the violating step {step}")
    if p["obs"][:step] != q["obs"][:step]:
        raise CheckError(f"{where}: the observations differ before the violating step {step}")
    lo, hi = p["step_spans"][step]
    lo2, hi2 = q["step_spans"][step]
    if p["text"][lo:hi] == q["text"][lo2:hi2]:
        raise CheckError(f"{where}: the possible and impossible episodes are the same at the "
                         f"violating step {step}; the impossible edit must change it")
