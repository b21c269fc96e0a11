"""Publishing a task's data: Parquet export, its Hugging Face dataset card, one-commit Hub push.

The card is generated from the task spec and the generated data's statistics, so the committed
cards in `datacards/` can be checked for staleness and an export always documents itself.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probekit.errors import UserError
from probekit.io import write_text
from probekit.tasks import Task, list_tasks, load_task
from probekit.worlds import WORLDS, Knob, World
from probekit.worlds.rows import PAIR_COLUMNS, VIOLATION_COLUMNS

CONFIG_FOLDERS = {"episodes": "data", "pairs": "pairs", "violations": "violations"}
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))
EPISODE_COLUMNS = {
    "text": "the episode as text: the steps joined by spaces, then the closing question if any",
    "step_spans": "[T × 2] character offsets (start, end) of each step in `text`",
    "tokens": "the episode in the world's own vocabulary (token ids)",
    "token_steps": "[T] index into `tokens` of each step's last token",
    "obs": "[T × D] continuous observations, for latent and JEPA-style models",
    "state": "[T × S] the true world state after each step",
    "surface": "[T] each step's surface form (what the control task keys on)",
    "query_span": "character span of the closing question's answer word ([-1, -1] if none)",
    "query_answer": "the closing question's answer word (empty if none)",
}
CONTROL_TEXT = {
    "step_text": "step surface form",
    "step_text_and_index": "pair of step surface form and step position",
}


def shard_path(config: str, split: str) -> str:
    """Path of a split's Parquet file inside an export (Hub layout: one shard per split)."""
    return f"{CONFIG_FOLDERS[config]}/{split}-00000-of-00001.parquet"


# --- statistics -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitStats:
    """Sizes of one split: rows and Arrow bytes of each config, steps per episode, and how
    many pairs have a placebo and how many violation pairs break each rule."""

    episodes: int
    episode_bytes: int
    pairs: int | None
    pair_bytes: int | None
    steps_min: int
    steps_max: int
    steps_mean: float
    label_changed: float | None  # share of pairs whose readout label differs from the base's
    placebos: int | None = None  # pairs with a placebo
    violations: int | None = None
    violation_bytes: int | None = None
    kinds: dict[str, int] | None = None  # violation pairs per kind


@dataclass(frozen=True)
class TargetStats:
    """One label column on the train split: majority-class rate, or mean and std if regressed."""

    chance: float | None
    mean: float | None
    std: float | None


@dataclass(frozen=True)
class DataStats:
    """Everything the card reports about generated data; deterministic for a fingerprint."""

    splits: dict[str, SplitStats]
    targets: dict[str, TargetStats]
    control_types: int
    obs_dim: int
    state_dim: int
    episode_features: Any  # datasets.Features
    pair_features: Any  # datasets.Features | None
    violation_features: Any = None  # datasets.Features | None


def _flat(column) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


def data_stats(task: Task) -> DataStats:
    """Generate (or read from cache) every split of `task` and measure it."""
    import pyarrow.compute as pc

    has_pairs = task.spec.counterfactual is not None
    has_violations = task.spec.violations is not None
    splits = {}
    for split in task.splits:
        ds = task.dataset(split)
        steps = pc.list_value_length(ds.data.column("step_spans")).to_numpy()
        pairs = task.pairs(split) if has_pairs else None
        violations = task.violations(split) if has_violations else None
        changed = None
        if pairs is not None and len(pairs):
            base = np.asarray(pairs["base_label"], dtype=float)
            cf = np.asarray(pairs["counterfactual_label"], dtype=float)
            changed = float(np.mean(base != cf))
        kinds = None
        if violations is not None:
            names, counts = np.unique(np.asarray(violations["kind"], dtype=str),
                                      return_counts=True)
            kinds = {str(k): int(c) for k, c in zip(names, counts)}
        splits[split] = SplitStats(
            episodes=len(ds), episode_bytes=int(ds.data.nbytes),
            pairs=None if pairs is None else len(pairs),
            pair_bytes=None if pairs is None else int(pairs.data.nbytes),
            steps_min=int(steps.min()), steps_max=int(steps.max()),
            steps_mean=float(steps.mean()), label_changed=changed,
            placebos=None if pairs is None else int(np.sum(pairs["has_placebo"])),
            violations=None if violations is None else len(violations),
            violation_bytes=None if violations is None else int(violations.data.nbytes),
            kinds=kinds)
    train = task.dataset("train")
    targets = {}
    for t in task.targets:
        values = _flat(train.data.column(f"label.{t.name}"))
        if t.kind == "class":
            counts = np.unique(values, return_counts=True)[1]
            targets[t.name] = TargetStats(float(counts.max() / counts.sum()), None, None)
        else:
            values = values.astype(float)
            targets[t.name] = TargetStats(None, float(values.mean()), float(values.std()))
    surface = train["surface"]
    if task.spec.control["feature"] == "step_text_and_index":
        types = {(i, s) for row in surface for i, s in enumerate(row)}
    else:
        types = {s for row in surface for s in row}
    first = train[0]
    return DataStats(
        splits=splits, targets=targets, control_types=len(types),
        obs_dim=len(first["obs"][0]), state_dim=len(first["state"][0]),
        episode_features=train.features,
        pair_features=task.pairs("train").features if has_pairs else None,
        violation_features=task.violations("train").features if has_violations else None)


# --- card -----------------------------------------------------------------------------------

def _size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>10M")


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _value(v: Any) -> str:
    """A knob value as it is written in YAML (JSON is valid YAML flow syntax)."""
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _knob_valid(k: Knob) -> str:
    return k.range_text().removeprefix("valid: ").removeprefix("valid range ")


def card_metadata(task: Task, stats: DataStats | None) -> str:
    """The card's YAML front matter (Hub dataset-card fields), built with `DatasetCardData`."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    spec = task.spec
    configs = (["episodes"] + (["pairs"] if spec.counterfactual is not None else [])
               + (["violations"] if spec.violations is not None else []))
    card = DatasetCardData(
        license=spec.license,
        task_categories=["token-classification"],
        size_categories=[_size_category(sum(s.size for s in spec.splits.values()))],
        pretty_name=f"probekit {spec.name} (v{spec.version})",
        tags=["probekit", "probing", "world-models", "interpretability", "synthetic",
              f"world:{spec.world}"],
        configs=[{"config_name": c, "data_files": [{"split": s, "path": shard_path(c, s)}
                                                    for s in spec.splits],
                  **({"default": True} if c == "episodes" else {})} for c in configs],
    )
    if stats is not None:
        infos = {}
        for c in configs:
            fields = {"episodes": ("episodes", "episode_bytes", stats.episode_features),
                      "pairs": ("pairs", "pair_bytes", stats.pair_features),
                      "violations": ("violations", "violation_bytes",
                                     stats.violation_features)}[c]
            sizes = {s: (getattr(st, fields[0]), getattr(st, fields[1]))
                     for s, st in stats.splits.items()}
            splits = datasets.SplitDict()
            for s, (n, nbytes) in sizes.items():
                splits.add(datasets.SplitInfo(s, num_bytes=nbytes, num_examples=n))
            infos[c] = datasets.DatasetInfo(
                features=fields[2], splits=splits,
                dataset_size=sum(b for _, b in sizes.values()))
        DatasetInfosDict(infos).to_dataset_card_data(card)
    return card.to_yaml()


def render_card(task: Task, stats: DataStats | None, repo: str | None = None) -> str:
    """The dataset card (README.md) of `task`; without `stats` it is a stub from the spec alone."""
    spec = task.spec
    world_cls: type[World] = WORLDS.get(spec.world)
    world = spec.world_for()
    repo_id = repo or "ORG/NAME"
    out = [f"---\n{card_metadata(task, stats)}\n---\n", f"# probekit task `{spec.name}` "
           f"(version {spec.version})\n", spec.description + "\n"]
    if stats is None:
        out.append(f"> Stub written from the spec alone. Statistics (chance, pair counts, sizes) "
                   f"appear once the data is generated: `probekit data cards --task {spec.name}` "
                   f"or `probekit data export {spec.name} --out DIR`.\n")
    out.append(f"Generated by probekit from the task spec `{spec.name}.yaml`; every row can be "
               "regenerated bit-identically from the spec (see *Fingerprint*).\n")

    out.append(f"## World\n\n**{spec.world}** (world code version {world_cls.version}): "
               f"{world_cls.description}\n")
    obs_dim = "" if stats is None else f" (D = {stats.obs_dim})"
    state_dim = "" if stats is None else f" (S = {stats.state_dim})"
    out.append("Every episode is a sequence of T steps given in three views of the same events: "
               f"`text` with `step_spans` for models with their own tokenizer; `tokens` with "
               f"`token_steps` in the world's own vocabulary of {len(world.vocabulary())} words; "
               f"`obs`, D floats per step{obs_dim}, for latent and JEPA-style models. `state`, S "
               f"values per step{state_dim}, and one `label.<target>` column per target hold the "
               "truth after each step.\n")
    rows = [[f"`{c}`", d] for c, d in EPISODE_COLUMNS.items()]
    rows.append(["`label.<target>`", "[T] the target's label after each step (see *Targets*)"])
    if spec.frames is not None:
        rows.append(["`frames`", "[T·F × C × H × W] uint8: the episode as video (see *Frames*)"])
    out.append("### Columns of `episodes`\n\n" + _table(["column", "content"], rows) + "\n")
    if spec.frames is not None:
        out.append(_frames_section(task))

    declared = {t.name: t.chance for t in spec.targets if t.chance is not None}
    rows = []
    for t in task.targets:
        st = stats.targets[t.name] if stats else None
        if t.kind == "class":
            chance = _fmt(st.chance if st else None)
        else:
            chance = "—" if st is None else f"R² 0 (mean {st.mean:.3f}, std {st.std:.3f})"
        spec_chance = declared.get(t.name, declared.get(t.family))
        if spec_chance is not None:
            chance += f" (spec: {spec_chance})"
        rows.append([f"`{t.name}`", t.kind, t.n_classes if t.n_classes is not None else "—",
                     chance])
    out.append("## Targets\n\nOne label per step. *Chance* is the majority-class rate over all "
               "steps of the train split: the accuracy of always guessing the most frequent "
               "label. Probe scores are reported against it (and against the control task "
               "below).\n\n" + _table(["target", "kind", "classes", "chance"], rows) + "\n")

    ctl = spec.control
    types = "" if stats is None else (f" The train split holds {stats.control_types} distinct "
                                      "types.")
    out.append(f"## Control task\n\nControl labels (Hewitt & Liang 2019) give each distinct "
               f"{CONTROL_TEXT[ctl['feature']]} (`{ctl['feature']}`) a fixed random label "
               f"drawn with seed {ctl['seed']} from the target's label distribution; "
               f"selectivity is probe accuracy minus control accuracy.{types}\n")

    if spec.counterfactual is not None:
        how = " ".join((inspect.getdoc(world_cls.counterfactual) or "").split())
        knobs = {k.name: k for k in world_cls.counterfactual_knobs}
        rows = [[f"`{name}`", _value(v), knobs[name].doc] for name, v in
                spec.counterfactual.items()]
        text = ("## Counterfactual pairs\n\nThe `pairs` config holds one row per base "
                "episode that admits a minimal counterfactual: a source episode that differs "
                "from its base in one intervened variable at one step, and the label the "
                "readout must take if the model follows the source world. An interchange "
                "intervention patches the source's latents into the base run at that step; "
                f"interchange-intervention accuracy is the share of pairs whose readout "
                f"follows. {how}\n\n" + _table(["setting", "value", "meaning"], rows) + "\n\n")
        placebo = " ".join((inspect.getdoc(world_cls.placebo) or "").split())
        text += ("Base and source are aligned: the same steps, the same number of world tokens "
                 "and of words in every step, so a patch at a token position means the same "
                 "thing in both. Each pair also carries a *placebo* where the world can make "
                 "one: a source that changes a variable the readout does not depend on, "
                 "aligned the same way, whose readout label is the base's (an intervention "
                 f"that follows it must leave the readout alone). {placebo}\n\n")
        rows = [[f"`{c}`", d] for c, d in PAIR_COLUMNS.items()]
        rows.append(["`source.<column>`", "the source episode, same columns as `episodes`"])
        rows.append(["`placebo.<column>`", "the placebo episode, same columns as `episodes` "
                     "(empty without one)"])
        text += _table(["column", "content"], rows) + "\n"
        if stats is not None:
            rows = [[s, st.pairs, _fmt(st.pairs / st.episodes), _fmt(st.label_changed),
                     _fmt(st.placebos / st.pairs if st.pairs else None)]
                    for s, st in stats.splits.items()]
            text += ("\n" + _table(["split", "pairs", "pairs per episode",
                                    "readout label changed", "pairs with a placebo"], rows)
                     + "\n")
        out.append(text)

    out.append(_violations_section(task, world_cls, stats))

    rows = [[f"`{k.name}`", _value(spec.knobs[k.name]), _value(k.default), _knob_valid(k),
             k.doc] for k in world_cls.knobs]
    out.append("## Knobs\n\nThe world's difficulty knobs: this task's value, the world's default "
               "and the valid range (checked when the spec loads).\n\n"
               + _table(["knob", "value", "default", "valid", "meaning"], rows) + "\n")

    rows = []
    for name, s in spec.splits.items():
        extra = ", ".join(f"{k}={_value(v)}" for k, v in s.knobs.items()) or "—"
        st = stats.splits[name] if stats else None
        steps = "—" if st is None else f"{st.steps_min} / {st.steps_mean:.1f} / {st.steps_max}"
        pairs = "—" if st is None or st.pairs is None else st.pairs
        rows.append([name, s.size, pairs, s.seed, extra, steps])
    out.append("## Splits\n\nEach split is drawn with its own seed; a split's knobs override "
               "the task's.\n\n" + _table(["split", "episodes", "pairs", "seed", "knobs",
                                           "steps (min / mean / max)"], rows) + "\n")

    out.append(f"## Fingerprint\n\n`{task.fingerprint}`: a hash of the canonical spec and the "
               "world's code version. The same fingerprint means byte-identical data; "
               "results computed on different fingerprints are never ranked together.\n")

    data_files = ", ".join(f'"{s}": "DIR/{shard_path("episodes", s)}"' for s in spec.splits)
    pairs_load = (f'pairs = load_dataset("{repo_id}", "pairs", split="test")\n'
                  if spec.counterfactual is not None else "")
    pairs_load += (f'violations = load_dataset("{repo_id}", "violations", split="test")\n'
                   if spec.violations is not None else "")
    out.append(
        "## Loading\n\n```python\nfrom datasets import load_dataset\n\n"
        f"# from the Hub, after `probekit data push {spec.name} --repo {repo_id}`\n"
        f'episodes = load_dataset("{repo_id}", "episodes")\n{pairs_load}\n'
        f"# from a local export, after `probekit data export {spec.name} --out DIR`\n"
        'episodes = load_dataset("DIR", "episodes")  # the folder reads like the Hub repo\n'
        f'episodes = load_dataset("parquet", data_files={{{data_files}}})\n\n'
        "# or regenerate it bit-identically\nfrom probekit.tasks import load_task\n\n"
        f'task = load_task("{spec.name}")\nassert task.fingerprint == "{task.fingerprint}"\n'
        'train = task.dataset("train")\n```\n')

    out.append(
        "## Citation\n\nCite the task by name, version and fingerprint, and the work its "
        "world follows where the description names one.\n\n```bibtex\n"
        f"@misc{{probekit_{spec.name.replace('-', '_')}_v{spec.version},\n"
        f"  title = {{probekit task {spec.name}, version {spec.version}}},\n"
        f"  note  = {{World {spec.world} (code version {world_cls.version}); "
        f"fingerprint {task.fingerprint}}}\n}}\n```\n")
    return "\n".join(out)


def _frames_section(task: Task) -> str:
    """The card's section on the `frames` view: what the video shows and its knobs."""
    from probekit.worlds.render import FRAME_KNOBS, RENDER_VERSION

    f = task.spec.frames
    assert f is not None
    F, C, size = f["frames_per_step"], f["channels"], f["size"]
    rows = [[f"`{k.name}`", _value(f[k.name]), _knob_valid(k), k.doc] for k in FRAME_KNOBS]
    return ("### Frames\n\n"
            f"`frames` holds each episode rendered as video: F = {F} frame(s) per step of "
            f"{C} channel(s) × {size} × {size} pixels, uint8, so [T·{F} × {C} × {size} × "
            f"{size}]. Step s is frames s·F … (s+1)·F − 1, the last of them showing the step's "
            "own observation. Frames are drawn from `obs` (renderer version "
            f"{RENDER_VERSION}, numpy only), deterministically: the same fingerprint gives "
            "the same pixels. Every episode of a pair or violation pair carries its own "
            "(`source.frames`, `placebo.frames`, `possible.frames`, `impossible.frames`), "
            "so the same probes and interventions apply to video models.\n\n"
            + _table(["setting", "value", "valid", "meaning"], rows) + "\n\n"
            f"![The first {PREVIEW_EPISODES} test episodes]({preview_name(task)})\n\n"
            f"*The first {PREVIEW_EPISODES} test episodes, {PREVIEW_SCALE}× larger, "
            f"{PREVIEW_MS} ms a frame (`{preview_name(task)}` beside this card).*\n")


PREVIEW_EPISODES, PREVIEW_SCALE, PREVIEW_MS = 4, 3, 120


def preview_name(task: Task) -> str:
    """The file name of a frames task's preview, beside its card (export folder, `datacards/`)."""
    return f"{task.name}.gif"


def preview_gif(task: Task) -> bytes:
    """A looping GIF of the first PREVIEW_EPISODES test episodes' frames side by side (a 2×2
    grid on a gray border, PREVIEW_SCALE× larger, PREVIEW_MS ms a frame); deterministic."""
    import io

    from PIL import Image

    ds = task.dataset("test").with_format("numpy")
    n = min(PREVIEW_EPISODES, len(ds))
    clips = [np.asarray(ds[i]["frames"], dtype=np.uint8) for i in range(n)]
    T = min(len(c) for c in clips)
    _, C, H, W = clips[0].shape
    cols = min(2, n)
    rows = -(-n // cols)
    grid = np.full((T, rows * (H + 2) + 2, cols * (W + 2) + 2, C), 128, dtype=np.uint8)
    for i, clip in enumerate(clips):
        r, c = divmod(i, cols)
        y, x = 2 + r * (H + 2), 2 + c * (W + 2)
        grid[:, y:y + H, x:x + W] = clip[:T].transpose(0, 2, 3, 1)
    grid = grid.repeat(PREVIEW_SCALE, axis=1).repeat(PREVIEW_SCALE, axis=2)
    mode = "L" if C == 1 else "RGB"
    images = [Image.fromarray(g[..., 0] if C == 1 else g, mode) for g in grid]
    if C == 3:  # one fixed palette, so the bytes do not depend on PIL's per-frame choices
        palette = images[0].quantize(256, method=Image.Quantize.MEDIANCUT, dither=0)
        images = [im.quantize(palette=palette, dither=0) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=PREVIEW_MS, loop=0, optimize=False)
    return buf.getvalue()


def _violations_section(task: Task, world_cls: type[World], stats: DataStats | None) -> str:
    """The card's section on violation pairs (or on why there are none)."""
    spec = task.spec
    head = "## Violation pairs\n\n"
    if spec.violations is None:
        null = "The prediction axis's violation-of-expectation score is null on this task."
        if world_cls.no_violations:
            return head + f"None: in the {spec.world} world {world_cls.no_violations}. {null}\n"
        if not world_cls.violation_knobs:
            return head + f"None: the {spec.world} world makes no violation pairs. {null}\n"
        kinds = next((k.choices for k in world_cls.violation_knobs if k.name == "kinds"), ())
        made = f" (kinds: {', '.join(f'`{k}`' for k in kinds)})" if kinds else ""
        return (head + "None: this task declares no `violations` field, though its world makes "
                f"them{made}. {null}\n")
    how = " ".join((inspect.getdoc(world_cls.violation) or "").split())
    knobs = {k.name: k for k in world_cls.violation_knobs}
    text = (head + "The `violations` config holds one row per base episode that admits one: "
            "an *impossible* episode, the base with a minimal edit at one step that breaks the "
            "world's rules, beside a *possible* episode with a legal edit of the same size at "
            "the same step, so token frequencies and edit sizes are matched. A model that "
            "expects what the world does is more surprised by the impossible one "
            "(violation of expectation). Both are aligned with the base like counterfactual "
            "pairs. The impossible episode's `state` and labels equal the base's before the "
            "step (look-ahead targets included: they say what the world would do) and are "
            "undefined from it on (-1 in integer columns, NaN in float ones): the world "
            f"defines no state after an impossible event. {how}\n\n")
    rows = [[f"`{name}`", _value(v), knobs[name].doc] for name, v in spec.violations.items()]
    text += _table(["setting", "value", "meaning"], rows) + "\n\n"
    rows = [[f"`{c}`", d] for c, d in VIOLATION_COLUMNS.items()]
    rows.append(["`possible.<column>`", "the possible episode, same columns as `episodes`"])
    rows.append(["`impossible.<column>`", "the impossible episode, same columns as `episodes`"])
    text += _table(["column", "content"], rows) + "\n"
    if stats is not None:
        kinds = list(spec.violations["kinds"])
        rows = [[s, st.violations, _fmt(st.violations / st.episodes),
                 *[(st.kinds or {}).get(k, 0) for k in kinds]]
                for s, st in stats.splits.items()]
        text += "\n" + _table(["split", "violation pairs", "per episode",
                               *[f"`{k}`" for k in kinds]], rows) + "\n"
    return text


def card(task: Task, repo: str | None = None) -> str:
    """The full dataset card of `task` (generates its data if it is not cached)."""
    return render_card(task, data_stats(task), repo)


# --- export ---------------------------------------------------------------------------------

def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {str(out)!r} is a file; pass a new or empty folder")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output folder {str(out)!r} exists and is not empty; pass a new or "
                        "empty folder")


def check_export_folder(out: str | os.PathLike) -> Path:
    """Everything about an export's `--out` that can fail, before any data is generated: an
    existing file or non-empty folder, a file in place of a parent, no write permission."""
    from probekit.io import check_output_dir

    out = Path(out)
    _check_out(out)
    return check_output_dir(out, "--out")


def _write_export(task: Task, folder: Path, repo: str | None) -> None:
    import datasets

    from probekit.progress import phase

    tables = [("episodes", task.dataset)]
    tables += [("pairs", task.pairs)] if task.spec.counterfactual is not None else []
    tables += [("violations", task.violations)] if task.spec.violations is not None else []
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar for the whole export, not one per file
    try:
        with phase("export", task.name, total=len(task.splits) * len(tables),
                   unit="files") as bar:
            for split in task.splits:
                for config, table in tables:
                    target = folder / shard_path(config, split)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    table(split).to_parquet(str(target))
                    bar.update()
            bar.summary = f"{bar.total} Parquet files ({', '.join(c for c, _ in tables)})"
    finally:
        if bars:
            datasets.enable_progress_bars()
    (folder / "README.md").write_text(card(task, repo), encoding="utf-8")
    if task.spec.frames is not None:
        (folder / preview_name(task)).write_bytes(preview_gif(task))


def export(task: Task, out: str | os.PathLike, repo: str | None = None) -> Path:
    """Write every split as Parquet plus the dataset card `README.md` into `out`, atomically:
    everything goes to a temporary folder beside `out`, renamed onto it at the end."""
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        _write_export(task, tmp, repo)
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- cards folder ---------------------------------------------------------------------------

def write_cards(out: str | os.PathLike, names: Iterable[str] | None = None,
                include: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Write the card of each task (default: every registered task) to `out/<task>.md`."""
    include = list(include)
    names = list_tasks(include) if names is None else list(names)
    written = []
    for n in names:
        task = load_task(n, include)
        written.append(write_text(Path(out) / f"{n}.md", card(task)))
        if task.spec.frames is not None:
            (Path(out) / preview_name(task)).write_bytes(preview_gif(task))
    return written


def stale_cards(folder: str | os.PathLike, names: Iterable[str] | None = None,
                include: Iterable[str | os.PathLike] = ()) -> list[str]:
    """One line per card in `folder` that is missing or differs from a fresh one, and (when
    checking every task) per card whose task is not registered."""
    folder, include = Path(folder), list(include)
    registered = list_tasks(include)
    fix = "regenerate with `probekit data cards --out " + " --include-path ".join(
        str(p) for p in [folder, *include]) + "`"
    problems = []
    for n in registered if names is None else names:
        path = folder / f"{n}.md"
        if not path.exists():
            problems.append(f"{path} is missing; {fix}")
        elif path.read_text(encoding="utf-8") != card(task := load_task(n, include)):
            problems.append(f"{path} is stale (spec or data changed); {fix}")
        elif task.spec.frames is not None and (
                not (gif := folder / preview_name(task)).is_file()
                or gif.read_bytes() != preview_gif(task)):
            problems.append(f"{gif} is missing or stale; {fix}")
    if names is None:
        problems += [f"{p} has no registered task; delete it" for p in sorted(folder.glob("*.md"))
                     if p.stem not in registered]
    return problems


# --- push -----------------------------------------------------------------------------------

def push(task: Task, repo: str, *, endpoint: str | None = None, private: bool = False,
         create_pr: bool = False):
    """Export `task` and upload it to the Hub dataset repo `repo` in one commit (or one pull
    request); returns huggingface_hub's `CommitInfo`. The token comes from huggingface_hub's
    usual places (`HF_TOKEN`, `hf auth login`) and is never printed."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from probekit.hub import check_online, check_reachable, check_repo_id, hub_errors, quiet_hub

    check_repo_id(repo)
    offline_hint = " to publish to the Hub"
    check_online("push", offline_hint)
    api = HfApi(endpoint=endpoint)
    check_reachable(api.endpoint)  # at once, before the export and without retries
    with quiet_hub(), tempfile.TemporaryDirectory(prefix=f"probekit-{task.name}-") as tmp:
        folder = export(task, Path(tmp) / "export", repo=repo)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(),
                                         path_or_fileobj=str(p)) for p in files]
        with hub_errors("push", repr(repo), api.endpoint, offline_hint=offline_hint,
                        denied=f"the Hub refused {repo!r}"):
            api.create_repo(repo, repo_type="dataset", private=True if private else None,
                            exist_ok=True)
            return api.create_commit(
                repo, operations, repo_type="dataset", create_pr=create_pr,
                commit_message=f"probekit task {task.name} v{task.version}",
                commit_description=f"Data and card of task {task.name}, version {task.version},"
                                   f" fingerprint {task.fingerprint}.")
