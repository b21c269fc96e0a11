"""Spectrum checkpoints: a folder with `config.json` (architecture), `model.safetensors`
(weights) and `spectrum.json` (where on the spectrum and how it was trained).

Everything is JSON and safetensors — no pickle, no remote code. Loading checks every field's
type and that the three files agree, so a damaged or hand-edited folder fails with one line.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probekit.errors import ModelError, ProbekitError
from probekit.io import MAX_JSON_BYTES, atomic_path, parse_json, read_text, write_json
from probekit.spectrum.model import SpectrumConfig, SpectrumModel, init_model
from probekit.spectrum.objective import Objective
from probekit.worlds import WORLDS

CONFIG, WEIGHTS, META = "config.json", "model.safetensors", "spectrum.json"
MODEL_TYPE = "probekit-spectrum"
SCHEMA = "probekit.spectrum/1"
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "spectrum"
# config.json fields added after the first checkpoints (the latent predictor, frame inputs):
# a folder saved before them reads them at their defaults.
ADDED_DEFAULTS = {f.name: f.default for f in fields(SpectrumConfig)
                  if f.name in ("predictor", "frame_channels", "frame_size", "patch",
                                "pixel_head")}
# spectrum.json fields added after the first checkpoints: read at their defaults when absent.
META_ADDED_DEFAULTS = {"device": "cpu"}


@dataclass(frozen=True)
class SpectrumMeta:
    """What `spectrum.json` holds: the spectrum position (family, alpha, horizon, target), the
    world and task trained on, and the run (steps, seed, …, final losses, collapse check)."""

    family: str
    alpha: float
    horizon: int
    target: str
    vicreg: float
    ema: list[float]
    world: str
    knobs: dict[str, Any]
    task: str
    task_fingerprint: str
    steps: int
    seed: int
    batch_size: int
    lr: float
    weight_decay: float
    episodes: int
    train_seconds: float
    final: dict[str, float]
    collapse: dict[str, Any]
    device: str = "cpu"  # where it was trained ("cpu", "cuda")
    history: list[dict[str, float]] = field(default_factory=list)
    schema: str = SCHEMA

    def objective(self) -> Objective:
        return Objective(self.alpha, self.horizon, self.target, self.vicreg,
                         (self.ema[0], self.ema[1]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` is meant as a spectrum checkpoint: it has the metadata file, or a
    config.json of the spectrum model type (loading then says what is missing)."""
    folder = Path(folder)
    if (folder / META).is_file():
        return True
    if not (folder / CONFIG).is_file():
        return False
    try:
        raw = _json(folder / CONFIG)
    except ModelError:  # the loader that reads the folder next says what is wrong, in one line
        return False
    return isinstance(raw, dict) and raw.get("model_type") == MODEL_TYPE


def shipped() -> list[str]:
    """Names of the spectrum checkpoints that ship inside the package."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if is_checkpoint(p))


def model_name(folder: str | Path) -> str:
    """What to hand `load_model` or `probekit.evaluate` for a checkpoint folder: a shipped
    reference by its name, as users evaluate it (its id is then probekit/<name>), any other
    folder by its path (id local/<folder>)."""
    folder = Path(folder)
    return folder.name if folder.resolve().parent == SHIPPED.resolve() else str(folder)


def save(folder: str | Path, model: SpectrumModel, meta: SpectrumMeta) -> Path:
    """Write the three files (each atomically); the metadata last, so a folder with it is whole."""
    folder = Path(folder)
    check(model.config, meta, str(folder))
    write_json(folder / CONFIG, {"model_type": MODEL_TYPE, **model.config.as_dict()})
    with atomic_path(folder / WEIGHTS) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(folder / META, meta.as_dict())
    return folder


def load(folder: str | Path) -> tuple[SpectrumModel, SpectrumMeta]:
    """The model (eval mode, CPU) and its metadata; ModelError on anything missing or at odds."""
    folder = Path(folder)
    where = str(folder)
    if not folder.is_dir():
        raise ModelError(f"spectrum checkpoint {where!r} is not a folder")
    for name in (CONFIG, WEIGHTS, META):
        if not (folder / name).is_file():
            raise ModelError(f"spectrum checkpoint {where!r} has no {name}; a checkpoint holds "
                             f"{CONFIG}, {WEIGHTS} and {META} (save it with "
                             "probekit.spectrum.save)")
    raw = _json(folder / CONFIG)
    if raw.get("model_type") != MODEL_TYPE:
        raise ModelError(f"{where}/{CONFIG}: model_type is {raw.get('model_type')!r}, not "
                         f"{MODEL_TYPE!r}")
    raw = {**ADDED_DEFAULTS, **raw}
    try:
        config = SpectrumConfig(**strict(SpectrumConfig, raw, f"{where}/{CONFIG}",
                                         ignore=("model_type",)))
        raw_meta = _json(folder / META)
        if isinstance(raw_meta, dict):
            raw_meta = {**META_ADDED_DEFAULTS, **raw_meta}
        meta = SpectrumMeta(**strict(SpectrumMeta, raw_meta, f"{where}/{META}"))
    except ProbekitError as e:
        raise ModelError(str(e)) from None
    check(config, meta, where)
    model = init_model(config, 0)  # every weight is overwritten; the global RNG is untouched
    try:
        state = load_file(str(folder / WEIGHTS))
    except (OSError, SafetensorError) as e:
        raise ModelError(f"{where}/{WEIGHTS} is not a readable safetensors file ({e})") from None
    expected = model.state_dict()
    problems = [f"it lacks {k!r}" for k in expected if k not in state] + \
        [f"it has an unexpected {k!r}" for k in state if k not in expected] + \
        [f"{k!r} is {tuple(state[k].shape)}, not {tuple(v.shape)}" for k, v in expected.items()
         if k in state and state[k].shape != v.shape]
    if problems:
        raise ModelError(f"{where}/{WEIGHTS} does not match {CONFIG}: {problems[0]}")
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def check(config: SpectrumConfig, meta: SpectrumMeta, where: str) -> None:
    """The metadata must agree with itself and with the architecture."""
    if meta.schema != SCHEMA:
        raise ModelError(f"{where}/{META}: schema {meta.schema!r} is not {SCHEMA!r}")
    if meta.device not in ("cpu", "cuda"):
        raise ModelError(f"{where}/{META}: device {meta.device!r} is not cpu or cuda")
    if len(meta.ema) != 2:
        raise ModelError(f"{where}/{META}: ema must be [start, end], got {meta.ema}")
    try:
        objective = meta.objective()
    except ProbekitError as e:
        raise ModelError(f"{where}/{META}: {e}") from None
    if meta.family != objective.station:
        raise ModelError(f"{where}/{META}: family {meta.family!r} does not match alpha "
                         f"{meta.alpha}, horizon {meta.horizon} and target {meta.target!r} "
                         f"(that is {objective.station!r})")
    head, kind = ((config.pixel_head, "pixel_head") if config.inputs == "frames"
                  else (config.token_head, "token_head"))
    if head != (meta.alpha < 1):
        raise ModelError(f"{where}: alpha {meta.alpha} in {META} but {CONFIG} has "
                         f"{kind}={head} (a next-step head exactly when alpha < 1)")
    if config.token_head and config.horizon != meta.horizon:
        raise ModelError(f"{where}: horizon {meta.horizon} in {META} but {CONFIG} has "
                         f"{config.horizon} token heads")
    if config.predictor and not (meta.alpha > 0 and meta.horizon == 1):
        raise ModelError(f"{where}: {CONFIG} keeps a latent predictor but {META} has alpha "
                         f"{meta.alpha} and horizon {meta.horizon} (a predictor is kept only "
                         "for alpha > 0 at horizon 1)")
    try:
        world = WORLDS.get(meta.world)(**meta.knobs)
    except ProbekitError as e:
        raise ModelError(f"{where}/{META}: {e}") from None
    if config.inputs == "tokens" and config.vocab_size != len(world.vocabulary()):
        raise ModelError(f"{where}: {CONFIG} has vocab_size {config.vocab_size} but world "
                         f"{meta.world!r} has {len(world.vocabulary())} words")


def strict(cls: type, raw: Any, where: str, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every field of dataclass `cls` from a JSON mapping: none missing, none unknown, each of
    its annotated type (str, int, float, bool, list, dict; ints accepted as floats)."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    extra = sorted(set(raw) - set(known) - set(ignore))
    if extra:
        raise ModelError(f"{where}: unknown field {extra[0]!r}; valid fields: "
                         + ", ".join(known))
    out = {}
    for name in known:
        if name not in raw:
            raise ModelError(f"{where}: missing field {name!r}")
        value, typ = raw[name], _base(hints[name])
        ok = isinstance(value, typ) and not (isinstance(value, bool) and typ is not bool)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ModelError(f"{where}.{name}: expected {typ.__name__}, got {value!r}")
        out[name] = value
    return out


def _base(hint: Any) -> type:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return next(_base(a) for a in typing.get_args(hint) if a is not type(None))
    return origin or hint


def _json(path: Path) -> Any:
    """A checkpoint's JSON file, read with the bounds of every JSON probekit reads
    (`probekit.io`: size, nesting, no NaN); ModelError naming the file otherwise."""
    return parse_json(read_text(path, MAX_JSON_BYTES, "MAX_JSON_BYTES", ModelError), str(path),
                      ModelError)
