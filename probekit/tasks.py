"""Task specs (strict YAML), their discovery (folders, include paths, entry points) and data.

A task is a world + knobs + splits + targets + control + counterfactual construction. Its
fingerprint hashes everything that determines the data plus the world's code version, so the
same fingerprint always means byte-identical data.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from probekit.errors import SpecError, UserError
from probekit.io import read_text, stable_hash
from probekit.registry import Registry
from probekit.results import check_name
from probekit.worlds import WORLDS, Target, World
from probekit.worlds.base import annotate
from probekit.worlds.rows import pair_features, pair_row, violation_features, violation_row

BUILTIN_TASKS = Path(__file__).resolve().parent.parent / "tasks"
REQUIRED_SPLITS = ("train", "val", "test")
CONTROL_FEATURES = ("step_text", "step_text_and_index")
SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
ENTRY_POINT_GROUP = "probekit.tasks"
# Bounds on a task spec, checked before anything is generated or allocated.
MAX_SPEC_BYTES = 256 * 2 ** 10  # a spec file (the built-in ones are about 1 KB)
MAX_SPEC_DEPTH = 16  # nesting of YAML lists and mappings (a spec nests 4 deep)
MAX_SPLIT_SIZE = 1_000_000  # episodes in one split
MAX_SPLIT_VALUES = 200_000_000  # numbers in one generated split (episodes x values each)
MAX_EPISODE_STEPS = 4096  # steps of one episode


LIMIT_SUFFIX = "-limit"  # a task limited to N episodes per split is named <task>-limit<N>
LIMITED_NAME = re.compile(r"(?P<task>.+)-limit(?P<n>[1-9][0-9]*)")


def cache_root() -> Path:
    """Where generated data and latents are cached (`PROBEKIT_CACHE`, else ~/.cache/probekit)."""
    return Path(os.environ.get("PROBEKIT_CACHE", Path.home() / ".cache" / "probekit"))


# --- spec ---------------------------------------------------------------------------------------

def check_task_name(name: Any, where: str = "task name") -> str:
    """A task name becomes file and folder names (data cache, results, cards, Hub splits), so
    it must follow `probekit.results.TASK_NAME_RULE` as it is."""
    return check_name(name, where, SpecError, task=True)


MAX_SEED = 2 ** 32


def _check_seed(value: int, where: str) -> None:
    if not 0 <= value < MAX_SEED:
        raise SpecError(f"{where}: must be in [0, 2**32), got {value}")


def _fields(obj: Any, where: str, required: dict[str, type], optional: dict[str, type]) -> dict:
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(obj).__name__}")
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:
        raise SpecError(f"{where}: key {odd[0]!r} is not a string; field names are strings "
                        "(quote it)")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; valid fields: "
                        + ", ".join(sorted({**required, **optional})))
    for key in required:
        if key not in obj:
            raise SpecError(f"{where}: missing required field {key!r}")
    for key, typ in {**required, **optional}.items():
        if key in obj and (not isinstance(obj[key], typ) or isinstance(obj[key], bool)
                           and typ is not bool):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise SpecError(f"{where}.{key}: expected {names}, got {obj[key]!r}")
    return obj


@dataclass(frozen=True)
class SplitSpec:
    size: int
    seed: int
    knobs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetSpec:
    name: str  # a world target family ("location") or one concrete column ("location.obj0")
    kind: str
    chance: float | None = None


@dataclass(frozen=True)
class TaskSpec:
    """The validated form of one task YAML file."""

    name: str
    version: int
    world: str
    knobs: dict[str, Any]
    splits: dict[str, SplitSpec]
    targets: tuple[TargetSpec, ...]
    control: dict[str, Any]
    counterfactual: dict[str, Any] | None
    description: str
    license: str
    violations: dict[str, Any] | None = None
    frames: dict[str, Any] | None = None  # the `frames` view's knobs (`probekit.worlds.render`)

    @classmethod
    def parse(cls, raw: Any, where: str = "task") -> TaskSpec:
        _fields(raw, where,
                {"name": str, "version": int, "world": str, "splits": dict, "targets": list,
                 "description": str, "license": str},
                {"knobs": dict, "control": dict, "counterfactual": (dict, type(None)),
                 "violations": (dict, type(None)), "frames": (dict, type(None))})
        name = raw["name"]
        check_task_name(name, f"{where}.name:")
        if raw["version"] < 1:
            raise SpecError(f"{where}.version: must be a positive integer, got {raw['version']}")
        world_cls = WORLDS.get(raw["world"])  # UnknownNameError lists the worlds
        knobs = world_cls.validate_knobs(raw.get("knobs") or {}, f"{where}.knobs")
        splits = {}
        for split, s in raw["splits"].items():
            w = f"{where}.splits.{split}"
            if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
                raise SpecError(f"{where}.splits: split name {split!r} must be letters, digits "
                                "and '_' (it names folders and Hub splits)")
            _fields(s, w, {"size": int, "seed": int}, {"knobs": dict})
            _check_seed(s["seed"], f"{w}.seed")
            if s["size"] < 1:
                raise SpecError(f"{w}.size: must be at least 1, got {s['size']}")
            if s["size"] > MAX_SPLIT_SIZE:
                raise SpecError(f"{w}.size: {s['size']:,} episodes is over the limit of "
                                f"{MAX_SPLIT_SIZE:,} per split (MAX_SPLIT_SIZE)")
            extra = s.get("knobs") or {}
            world_cls.validate_knobs({**knobs, **extra}, f"{w}.knobs")
            splits[split] = SplitSpec(s["size"], s["seed"], dict(extra))
        missing = [s for s in REQUIRED_SPLITS if s not in splits]
        if missing:
            raise SpecError(f"{where}.splits: missing split {missing[0]!r} "
                            f"(train, val and test are required)")
        targets = []
        for i, t in enumerate(raw["targets"]):
            w = f"{where}.targets[{i}]"
            _fields(t, w, {"name": str, "kind": str}, {"chance": (int, float)})
            if t["kind"] not in ("class", "regress"):
                raise SpecError(f"{w}.kind: {t['kind']!r} is not valid; valid: class, regress")
            chance = t.get("chance")
            if chance is not None and not 0 <= chance < 1:
                raise SpecError(f"{w}.chance: must be in [0, 1), got {chance}")
            targets.append(TargetSpec(t["name"], t["kind"], chance))
        if not targets:
            raise SpecError(f"{where}.targets: list at least one target")
        control = raw.get("control") or {}
        _fields(control, f"{where}.control", {}, {"feature": str, "seed": int})
        control = {"feature": "step_text", "seed": 0, **control}
        _check_seed(control["seed"], f"{where}.control.seed")
        if control["feature"] not in CONTROL_FEATURES:
            raise SpecError(f"{where}.control.feature: {control['feature']!r} is not valid; "
                            f"valid: {', '.join(CONTROL_FEATURES)}")
        cf = raw.get("counterfactual")
        if cf is not None:
            if not world_cls.counterfactual_knobs:
                raise SpecError(f"{where}.counterfactual: world {raw['world']!r} makes no "
                                "counterfactual pairs; remove the field")
            cf = world_cls.validate_knobs(cf, f"{where}.counterfactual",
                                          knobs=world_cls.counterfactual_knobs)
        vio = raw.get("violations")
        if vio is not None:
            if not world_cls.violation_knobs:
                why = f" ({world_cls.no_violations})" if world_cls.no_violations else ""
                raise SpecError(f"{where}.violations: world {raw['world']!r} makes no violation "
                                f"pairs{why}; remove the field")
            vio = world_cls.validate_knobs(vio, f"{where}.violations",
                                           knobs=world_cls.violation_knobs)
            vio["kinds"] = tuple(dict.fromkeys(vio["kinds"]))  # each kind once, in order
        frames = raw.get("frames")
        if frames is not None:
            from probekit.worlds.render import frame_spec

            frames = frame_spec(frames, f"{where}.frames", world_cls)
        spec = cls(name, raw["version"], raw["world"], knobs, splits, tuple(targets), control,
                   cf, raw["description"].strip(), raw["license"], vio, frames)
        spec.concrete_targets()  # validates target names against the world
        return spec

    def world_for(self, split: str | None = None) -> World:
        extra = self.splits[split].knobs if split else {}
        return WORLDS.get(self.world)(**{**self.knobs, **extra})

    def concrete_targets(self) -> list[Target]:
        """The label columns selected by `targets`, expanded from families."""
        available = self.world_for().targets()
        out: list[Target] = []
        for t in self.targets:
            hits = [a for a in available if a.name == t.name or a.family == t.name]
            if not hits:
                families = sorted({a.family for a in available})
                raise SpecError(f"task {self.name}: target {t.name!r} is not provided by world "
                                f"{self.world!r}; valid: {', '.join(families)}")
            for a in hits:
                if a.kind != t.kind:
                    raise SpecError(f"task {self.name}: target {a.name!r} is kind {a.kind!r}, "
                                    f"not {t.kind!r}")
                if a not in out:
                    out.append(a)
        return out

    def canonical(self) -> dict[str, Any]:
        """Everything that determines the data (prose fields excluded)."""
        return {
            "name": self.name, "version": self.version, "world": self.world,
            "knobs": self.knobs,
            "splits": {k: {"size": s.size, "seed": s.seed, "knobs": s.knobs}
                       for k, s in sorted(self.splits.items())},
            "targets": [[t.name, t.kind, t.chance] for t in self.targets],
            "control": self.control, "counterfactual": self.counterfactual,
            # Only when declared, so specs without the field keep their canonical form.
            **({"violations": self.violations} if self.violations is not None else {}),
            **({"frames": {**self.frames, "render_version": _render_version()}}
               if self.frames is not None else {}),
        }


def _render_version() -> str:
    from probekit.worlds.render import RENDER_VERSION

    return RENDER_VERSION


# --- task -----------------------------------------------------------------------------------

class Task:
    """A registered task: its spec, fingerprint and (cached, deterministic) data."""

    def __init__(self, spec: TaskSpec, path: Path | None = None):
        self.spec = spec
        self.path = path
        self.targets = spec.concrete_targets()
        world_cls = WORLDS.get(spec.world)
        self.fingerprint = stable_hash({"spec": spec.canonical(), "world": world_cls.name,
                                        "world_version": world_cls.version})
        self._sized: set[str] = set()
        self.limit: int | None = None  # see `limited`
        self._seed = self.fingerprint  # what example generators are drawn from

    def limited(self, limit: int | None) -> Task:
        """The first `limit` episodes of each split (`probekit eval --limit`), as a task of its
        own: named `<name>-limit<N>` (so its results are filed beside the full task's, never
        over them, and say what they are), with a fingerprint of its own
        (`limited_fingerprint`: its data, latents and results are cached apart, and `submit`
        never takes it for the registered task), holding the very episodes that open the full
        task's splits. None, or a limit no split exceeds, is the task itself."""
        if limit is None:
            return self
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UserError(f"--limit must be a whole number of episodes per split, at least 1; "
                            f"got {limit!r}")
        if self.limit is not None:
            raise UserError(f"task {self.name} is already limited to {self.limit} episodes per "
                            "split")
        if all(s.size <= limit for s in self.spec.splits.values()):
            return self
        name = f"{self.name}{LIMIT_SUFFIX}{limit}"
        check_task_name(name, f"task {self.name} with --limit {limit}:")
        view = Task.__new__(Task)
        view.__dict__.update(self.__dict__)
        view.spec = replace(self.spec, name=name, splits={
            k: replace(s, size=min(s.size, limit)) for k, s in self.spec.splits.items()})
        view.fingerprint = limited_fingerprint(self.fingerprint, limit)
        view.limit = limit
        view._sized = set()
        return view

    name = property(lambda self: self.spec.name)
    version = property(lambda self: self.spec.version)
    splits = property(lambda self: list(self.spec.splits))

    @property
    def frames_per_step(self) -> int | None:
        """Frames per step of the `frames` column (step s is frames s·F … (s+1)·F − 1), or
        None where the task declares no frames."""
        return None if self.spec.frames is None else self.spec.frames["frames_per_step"]

    def __repr__(self) -> str:
        limit = f", limit={self.limit}" if self.limit is not None else ""
        return (f"Task({self.name!r}, version={self.version}, fingerprint={self.fingerprint!r}"
                f"{limit})")

    def _check_split(self, split: str) -> None:
        if split not in self.spec.splits:
            raise UserError(f"task {self.name} has no split {split!r}; splits: "
                            + ", ".join(self.spec.splits))

    def example_rng(self, split: str, index: int) -> np.random.Generator:
        """The generator of one example: from (fingerprint, split, seed, index), never `hash()`."""
        s = self.spec.splits[split]
        entropy = [int(self._seed, 16), zlib.crc32(split.encode()), s.seed, index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _stream(self, split: str, index: int, stream: int) -> np.random.Generator:
        """A generator for one product of an example (1: the placebo, 2: the violation pair),
        independent of the episode's, so declaring one product never changes another."""
        s = self.spec.splits[split]
        entropy = [int(self._seed, 16), zlib.crc32(split.encode()), s.seed, index]
        return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))

    def generate(self, split: str, index: int, *, violation: bool = False):
        """Example `index` of `split`: its episode and counterfactual (None without pairs),
        the counterfactual's placebo (`pair.placebo`) and diffs filled in; with `violation`,
        also its violation pair (None without one) as a third item. Where the task declares
        frames, every episode made carries them (`Episode.frames`)."""
        self._check_split(split)
        world = self.spec.world_for(split)
        rng = self.example_rng(split, index)
        episode = world.episode(rng)
        pair = None
        if self.spec.counterfactual is not None:
            pair = world.counterfactual(episode, rng, self.spec.counterfactual)
            if pair is not None:
                pair.placebo = world.placebo(episode, pair, self._stream(split, index, 1),
                                             self.spec.counterfactual)
                annotate(world.name, episode, pair)
        vio = None
        if violation and self.spec.violations is not None:
            vio = world.violation(episode, self._stream(split, index, 2), self.spec.violations)
            if vio is not None:
                annotate(world.name, episode, vio)
        if self.spec.frames is not None:
            from probekit.worlds.render import attach

            placebo = pair.placebo if pair is not None else None
            attach(world, [episode, pair and pair.source, placebo and placebo.source,
                           vio and vio.possible, vio and vio.impossible], self.spec.frames)
        return (episode, pair, vio) if violation else (episode, pair)

    def check_size(self, split: str | None = None) -> None:
        """Refuse, before anything is generated, a split whose data would not fit: episodes
        longer than MAX_EPISODE_STEPS steps, or more than MAX_SPLIT_VALUES numbers in a split
        (estimated from its first example, which costs one episode)."""
        for name in [split] if split is not None else self.splits:
            if name in self._sized:
                continue
            self._check_split(name)
            size = self.spec.splits[name].size
            episode, pair = self.generate(name, 0)
            where = f"task {self.name}, split {name}"
            if episode.n_steps > MAX_EPISODE_STEPS:
                raise SpecError(f"{where}: episodes have {episode.n_steps:,} steps, over the "
                                f"limit of {MAX_EPISODE_STEPS:,} (MAX_EPISODE_STEPS); lower the "
                                "knob that sets the length")
            each = _n_values(episode) + (_n_values(pair.source) if pair is not None else 0)
            if each * size > MAX_SPLIT_VALUES:
                raise SpecError(f"{where}: {size:,} episodes of about {each:,} numbers each "
                                f"make {each * size:,}, over the limit of {MAX_SPLIT_VALUES:,} "
                                "per split (MAX_SPLIT_VALUES); use fewer or shorter episodes")
            self._sized.add(name)

    def cache_dir(self) -> Path:
        return cache_root() / "data" / f"{self.name}-v{self.version}-{self.fingerprint}"

    def dataset(self, split: str):
        """The episodes of `split` as a `datasets.Dataset` (generated once, then from cache)."""
        return self._load(split, "episodes")

    def pairs(self, split: str):
        """Counterfactual pairs of `split`, one row per base episode that has one: `base_index`
        into `dataset(split)`, the intervened `step` and `variable`, `readout_target`,
        `base_label`, `counterfactual_label`, the source episode in columns prefixed
        `source.`, where base and source differ (`diff_steps`, `diff_tokens`, `changed`) and
        the placebo (`has_placebo`, `placebo_step`, `placebo_variable`, `placebo_diff_steps`,
        `placebo_diff_tokens`, `placebo_changed`, the episode in columns prefixed `placebo.`;
        empty values where `has_placebo` is false). See `probekit.worlds.rows.PAIR_COLUMNS`."""
        if self.spec.counterfactual is None:
            raise UserError(f"task {self.name} has no counterfactual pairs (its spec has no "
                            "'counterfactual' field)")
        return self._load(split, "pairs")

    def violations(self, split: str):
        """Violation pairs of `split`, one row per base episode that has one: `base_index`,
        the edited `step`, the broken rule (`kind`), the edited `variable`, the `possible.`
        and `impossible.` episodes and their diffs against the base. See
        `probekit.worlds.rows.VIOLATION_COLUMNS`."""
        if self.spec.violations is None:
            world = WORLDS.get(self.spec.world)
            why = f": {world.no_violations}" if world.no_violations else ""
            raise UserError(f"task {self.name} has no violation pairs (its spec has no "
                            f"'violations' field{why})")
        return self._load(split, "violations")

    def _load(self, split: str, table: str):
        """One table of `split` (`episodes`, `pairs` or `violations`), built on first use."""
        import datasets

        self._check_split(split)
        folder = self.cache_dir() / split
        if not (folder / "episodes").exists():
            self.check_size(split)
            self._build(split, folder)
        return datasets.load_from_disk(str(folder / table))

    def _build(self, split: str, folder: Path) -> None:
        import datasets

        from probekit.progress import phase

        datasets.disable_progress_bars()  # our own bar below says what is being generated
        size = self.spec.splits[split].size
        rows, pair_rows, violation_rows = [], [], []
        with phase("data", f"{self.name}/{split}", total=size, unit="ep") as bar:
            for i in range(size):
                episode, pair, vio = self.generate(split, i, violation=True)
                rows.append(episode.row())
                if pair is not None:
                    pair_rows.append(pair_row(i, pair))
                if vio is not None:
                    violation_rows.append(violation_row(i, vio))
                bar.update()
            bar.summary = f"{size:,} episodes generated" + (
                f", {len(pair_rows):,} counterfactual pairs" if pair_rows else "")
            self._save(rows, pair_rows, violation_rows, folder)  # inside: the phase's time

    def _save(self, rows: list[dict[str, Any]], pair_rows: list[dict[str, Any]],
              violation_rows: list[dict[str, Any]], folder: Path) -> None:
        """Write the split's tables to `folder` at once (through a temporary sibling)."""
        import datasets

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            episodes = _episodes(rows, self.spec.frames)
            episodes.save_to_disk(str(tmp / "episodes"))
            if self.spec.counterfactual is not None:
                regress = any(isinstance(r["base_label"], float) for r in pair_rows)
                features = pair_features(episodes.features, "float64" if regress else "int64")
                datasets.Dataset.from_list(pair_rows, features=features).save_to_disk(
                    str(tmp / "pairs"))
            if self.spec.violations is not None:
                features = violation_features(episodes.features)
                datasets.Dataset.from_list(violation_rows, features=features).save_to_disk(
                    str(tmp / "violations"))
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished the same split first: keep theirs
                if not (folder / "episodes").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _episodes(rows: list[dict[str, Any]], frames: dict[str, Any] | None):
    """The `episodes` table of rows; frames, where declared, as one `Array4D` uint8 column
    (fixed C × H × W, any number of frames), which encodes and reads back as one block."""
    import datasets

    if frames is None:
        return datasets.Dataset.from_list(rows)
    features = datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "frames"}
                                           for r in rows]).features
    size = frames["size"]
    features["frames"] = datasets.Array4D((None, frames["channels"], size, size), "uint8")
    return datasets.Dataset.from_list(rows, features=features)


def rows_of(table: Any, indices: Iterable[int]) -> list[dict[str, Any]]:
    """Rows `indices` of a dataset table (`Task.dataset`, `pairs`, `violations`), in that order,
    as `table[i]` gives them, read in one query (a query per row costs milliseconds)."""
    indices = [int(i) for i in indices]
    if not indices:
        return []
    columns = table[indices]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def step_column(table: Any, name: str) -> np.ndarray:
    """A per-step column (`label.<target>`) of a dataset in Arrow format
    (`ds.with_format("arrow")`: make it once, each call copies the dataset) as an array
    [episodes, steps] of the column's own dtype (building Python lists first is a hundred times
    slower)."""
    col = table[name]
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(table), -1)


def limited_fingerprint(fingerprint: str, limit: int) -> str:
    """The fingerprint of a task limited to `limit` episodes per split (`Task.limited`)."""
    return stable_hash({"task": fingerprint, "limit": limit})


def limit_of(name: str, fingerprint: str, include: Iterable[str | os.PathLike] = ()
             ) -> int | None:
    """The `--limit` a result was made with, from its task name (`<task>-limit<N>`) and
    fingerprint: N when that is the fingerprint of the registered task limited to N, else None
    (a full run, or a task that merely has such a name)."""
    match = LIMITED_NAME.fullmatch(name or "")
    if match is None:
        return None
    try:
        task = load_task(match["task"], include)
    except UserError:
        return None
    n = int(match["n"])
    return n if limited_fingerprint(task.fingerprint, n) == fingerprint else None


def _n_values(episode: Any) -> int:
    """Numbers one episode stores (its text counted as one per 8 characters, its frames one
    per 8 pixels)."""
    arrays = [episode.obs, episode.state, *episode.labels.values()]
    frames = 0 if episode.frames is None else episode.frames.size // 8  # bytes, not numbers
    return (sum(int(np.asarray(a).size) for a in arrays) + len(episode.tokens)
            + len(episode.token_steps) + 2 * len(episode.step_spans) + len(episode.text) // 8
            + frames)


# --- discovery ------------------------------------------------------------------------------

class _SpecLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses what a task spec never needs and an attacker would use:
    aliases (billion laughs), nesting deeper than MAX_SPEC_DEPTH, duplicate keys (YAML would
    keep the last silently) and keys that are not strings (`1:`, `yes:`, `null:`)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _refused(event.start_mark, f"alias *{event.anchor} is not allowed in a task "
                           "spec (aliases can expand exponentially); write the value out")
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_SPEC_DEPTH:
            raise _refused(self.peek_event().start_mark, "lists and mappings nest deeper than "
                           f"{MAX_SPEC_DEPTH} levels (MAX_SPEC_DEPTH)")
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise _refused(key_node.start_mark, f"key {key!r} is not a string; quote "
                                   "it, since YAML reads yes, no, on, off, numbers and null as "
                                   "values")
                if key in seen:
                    raise _refused(key_node.start_mark, f"key {key!r} appears twice in one "
                                   f"mapping (first on line {seen[key].line + 1}); keep one")
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class _Refused(yaml.YAMLError):
    def __init__(self, mark, problem: str):
        super().__init__(problem)
        self.problem_mark, self.problem = mark, problem


def _refused(mark, problem: str) -> _Refused:
    return _Refused(mark, problem)


def parse_spec_text(text: str, where: str) -> Any:
    """The YAML of a task spec, parsed with `_SpecLoader`; one-line SpecError naming the line."""
    loader = None
    try:
        loader = _SpecLoader(text)  # a SafeLoader: no Python objects are ever built
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        if isinstance(e, _Refused):
            raise SpecError(f"{where}:{at}: {problem}") from None
        raise SpecError(f"{where}:{at} is not valid YAML ({problem})") from None
    except RecursionError:
        raise SpecError(f"{where}: lists and mappings nest deeper than {MAX_SPEC_DEPTH} levels "
                        "(MAX_SPEC_DEPTH)") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_spec_file(path: Path) -> TaskSpec:
    text = read_text(path, MAX_SPEC_BYTES, "MAX_SPEC_BYTES", SpecError)
    raw = parse_spec_text(text, str(path))
    spec = TaskSpec.parse(raw, where=str(path))
    if spec.name != path.stem:
        raise SpecError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


def _entry_points() -> list[Any]:
    """Objects registered under `probekit.tasks`: World subclasses, or folders of task YAML."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break every command
            raise UserError(f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP} failed to "
                            f"load ({type(e).__name__}: {e}); fix or uninstall that package") from e
        found.append(obj() if callable(obj) and not isinstance(obj, type) else obj)
    return found


def task_folders(include: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Built-in tasks, then `PROBEKIT_TASKS_PATH`, then `include`, then entry-point folders;
    each is read one level deep (`spec_files`)."""
    folders = [BUILTIN_TASKS]
    env = os.environ.get("PROBEKIT_TASKS_PATH", "")
    folders += [Path(p) for p in env.split(os.pathsep) if p]
    folders += [Path(p) for p in include]
    for obj in _entry_points():
        if isinstance(obj, type) and issubclass(obj, World):
            if obj.name not in WORLDS:
                WORLDS.add(obj.name, obj)
        elif isinstance(obj, (str, os.PathLike)):
            folders.append(Path(obj))
    unique: dict[Path, Path] = {}
    for f in folders:
        if f != BUILTIN_TASKS and not f.is_dir():
            what = "is not a folder" if f.exists() else "does not exist"
            raise UserError(f"task folder {str(f)!r} {what}; pass a folder of *.yaml task files")
        unique.setdefault(f.resolve(), f)  # a folder named twice is read once
    return list(unique.values())


def registry(include: Iterable[str | os.PathLike] = ()) -> Registry[Task]:
    """The task registry for these include folders (plus the built-in and environment ones),
    read afresh so that new files are seen; each task's spec is parsed on first use."""
    reg: Registry[Task] = Registry("task")
    for folder in task_folders(include):
        if not folder.is_dir():
            continue
        for path in spec_files(folder):
            if path.stem in reg:
                raise UserError(f"task {path.stem!r} is defined twice ({path}); rename one")
            reg.add(path.stem, loader=functools.partial(_load_file, path))
    return reg


def spec_files(folder: Path) -> list[Path]:
    """The task specs of one folder: its own `*.yaml`/`*.yml` files, one level deep (never its
    subfolders; `--recursive` adds those as folders of their own), hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
                  and p.is_file())


def with_subfolders(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """`folders` and every folder below them (hidden ones skipped), for `--recursive`."""
    out: list[Path] = []
    for top in map(Path, folders):
        out.append(top)
        if top.is_dir():
            for here, dirs, _ in os.walk(top):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out += [Path(here) / d for d in dirs]
    return out


def _load_file(path: Path) -> Task:
    return Task(load_spec_file(path), path)


def load_task(name: str, include: Iterable[str | os.PathLike] = ()) -> Task:
    """The registered task `name`; unknown names fail with the closest registered ones."""
    return registry(include).get(name)


def list_tasks(include: Iterable[str | os.PathLike] = ()) -> list[str]:
    return registry(include).names()
