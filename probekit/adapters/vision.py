"""Vision models on a task's `frames` view: V-JEPA 2 (video) and I-JEPA or any image encoder
(`AutoModel` with `image_size` and `patch_size`, read frame by frame).

Decisions (issue #19):

- **A step is all the patch tokens of its frames.** Frames go in as the world drew them (step s
  is frames s·F … (s+1)·F − 1, F = `frames_per_step`, read from the row: frames / steps).
  Tokens are step-major (V-JEPA 2: tubelet, row, column; an image encoder: frame, then its
  tokens), so step s owns the K consecutive tokens ending at `positions[b, s]` =
  (s+1)·K − 1 and `step_width` is K. Extraction, the probe readout and the `read` / `last`
  sites read a step as the **mean** of its K tokens (`Site.width`); a patch at a step writes
  **every** token of it. Nothing else in probekit knows about tokens: text adapters read a
  step at its last token (width 1), byte-identical to before.
- **Inputs are patches.** `Batch.inputs["patches"]` [B, N, values] holds each token's own
  pixels (resized, normalised), so `diff` names exactly the patch tokens whose pixels differ
  between base and source, the ceiling check swaps just those at `embed`, and the prediction
  axis finds a violation's first differing token. The forward folds them back into video
  (an exact reshape).
- **Frames per step vs tubelet.** V-JEPA 2 embeds tubelets of T frames: F a multiple of T is
  read as is (F / T tubelets per step); F dividing T repeats each frame T / F times (one
  tubelet per step, as V-JEPA 2 reads a single image); any other pair is refused before any
  latents (`check_task`).
- **Pixels.** uint8 → [0, 1], grayscale repeated to the model's channels, bilinear resize to
  the model's image size (V-JEPA 2's rotary grid is `crop_size / patch_size`), normalised with
  the checkpoint's processor mean and std (`preprocessor_config.json`), ImageNet's where it
  has none.
- **Layers.** `embed` (patch embeddings: the first block's input), `block.i` (the residual
  stream after encoder block i, before the final norm). Each is read through a `Tap`, an
  identity module the adapter calls on the layer's output seen as [B, N, D] tokens (an image
  encoder's [B·frames, tokens, D] regrouped per episode), so hooks, patches and Captum see one
  tensor per episode. The V-JEPA 2 predictor's layers are not layers here: the predictor runs
  only on a context/target split of an episode, never on the episode in one forward, so it
  has no per-step latent to probe; it serves the prediction axis.
- **Surprise (V-JEPA 2, `latent`).** The V-JEPA intuitive-physics protocol, one step at a
  time: for each step s ≥ 1 the encoder reads the frames of steps 0 … s − 1 (the context)
  and, separately, of steps 0 … s; the predictor, given the context tokens, predicts step s's
  tokens; the surprise of step s is the summed L1 / d distance between predicted and encoded
  tokens (`probekit.adapters.surprise`). Step 0 has no context: 0. Every step's surprise
  depends on frames up to it only, so the prediction axis's prefix check holds. Image
  encoders have no predictor: no surprise (the axis is null with that reason).
- **Loading.** `load` takes a local folder or a Hub id through one path (transformers'
  `from_pretrained`, safetensors only, `trust_remote_code` only when asked); `load_model`
  sends a checkpoint here when its config's `model_type` is a vision encoder (`is_vision`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probekit.adapters.base import Adapter, Batch, ModelIdentity, resolve_device, state_sha256
from probekit.errors import DataError, ModelError

VIDEO_TYPES = ("vjepa2",)
IMAGE_TYPES = ("ijepa", "vit", "dinov2", "deit", "beit", "vit_mae", "vit_msn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


class Tap(nn.Module):
    """An identity: the module whose output is one layer's latents [B, N, D] (hooks, patches
    and Captum attach here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class VisionAdapter(Adapter):
    """A vision encoder read on a task's frames (see the module docstring). Subclasses say how
    frames become model input (`tubelet`, `prefix`) and run the model."""

    ADAPTER = "vision"

    def __init__(self, model: nn.Module, identity: ModelIdentity, *,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.identity = identity
        config: Any = model.config
        self.channels = int(getattr(config, "in_chans", None) or config.num_channels)
        self.size = _side(getattr(config, "crop_size", None) or config.image_size, identity.id)
        self.patch = _side(config.patch_size, identity.id)
        if self.size % self.patch:
            raise ModelError(f"{identity.id}: image size {self.size} is not a multiple of the "
                             f"patch size {self.patch}; restore the config saved with it")
        self.grid = self.size // self.patch
        self.tubelet = int(getattr(config, "tubelet_size", 1))  # frames per token in time
        self.mean = torch.as_tensor(_per_channel(mean, self.channels, identity.id))
        self.std = torch.as_tensor(_per_channel(std, self.channels, identity.id))
        self._layer_map = self._layer_modules()
        self.taps = {name: Tap() for name in self._layer_map}
        for name, module in self._layer_map.items():
            module.register_forward_hook(self._relay(self.taps[name]))

    # --- subclass contract ------------------------------------------------------------------

    def _layer_modules(self) -> dict[str, nn.Module]:
        """The model modules behind `embed` and `block.i`, in order."""
        raise NotImplementedError

    def _tokens(self, h: torch.Tensor) -> torch.Tensor:
        """A layer module's hidden state as [B, N, D] step-major tokens (a view)."""
        return h

    def _untokens(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of `_tokens`."""
        return t.reshape(like.shape)

    @property
    def prefix(self) -> int:
        """Tokens before a frame's patch tokens that no pixel makes (a class token)."""
        return 0

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden state for video [B, T, C, H, W]."""
        raise NotImplementedError

    # --- the adapter ----------------------------------------------------------------------

    def _relay(self, tap: Tap) -> Callable[..., Any]:
        def run(module: nn.Module, args: Any, output: Any) -> Any:
            h = output[0] if isinstance(output, (tuple, list)) else output
            t = self._tokens(h)
            new = tap(t)
            if new is t:
                return None
            new = self._untokens(new, h)
            return (new, *output[1:]) if isinstance(output, (tuple, list)) else new
        return run

    def layers(self) -> list[str]:
        return list(self._layer_map)

    def module(self, layer: str) -> nn.Module:
        self.check_layers([layer])
        return self.taps[layer]

    def step_width(self, batch: Batch) -> int:
        return next(iter(batch.inputs.values())).shape[1] // batch.positions.shape[1]

    def repeats(self, frames_per_step: int) -> int:
        """How often each frame is repeated so that a step is whole tubelets; DataError where
        the task's frames per step and the model's tubelet do not fit."""
        T = self.tubelet
        if frames_per_step % T == 0:
            return 1
        if T % frames_per_step == 0:
            return T // frames_per_step
        raise DataError(f"the task draws {frames_per_step} frames per step but "
                        f"{self.identity.id} reads tubelets of {T} frames; use a task whose "
                        f"frames_per_step divides {T} or is a multiple of it")

    def check_task(self, task: Any) -> None:
        fps = getattr(task, "frames_per_step", None)
        if fps is None:
            raise DataError(f"task {task.name} has no frames view, so the vision model "
                            f"{self.identity.id} cannot read it; evaluate it on a frames task "
                            "(a *-frames task, e.g. balls-2-frames)")
        self.repeats(fps)

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        if not episodes:
            raise DataError("no episodes to encode")
        if "frames" not in episodes[0]:
            raise DataError(f"the episodes carry no frames, so the vision model "
                            f"{self.identity.id} cannot read them; evaluate it on a frames "
                            "task (a *-frames task, e.g. balls-2-frames)")
        S = len(episodes[0]["step_spans"])
        video = []
        for e in episodes:
            x = np.asarray(e["frames"], dtype=np.uint8)
            if x.ndim != 4 or len(e["step_spans"]) != S or x.shape[0] % S:
                raise DataError(f"episodes in one batch must have frames [T, C, H, W] with the "
                                f"same number of steps and T a multiple of it (got "
                                f"{tuple(x.shape)} for {len(e['step_spans'])} steps)")
            video.append(torch.from_numpy(x))
        if len({tuple(v.shape) for v in video}) > 1:
            raise DataError("episodes in one batch must have frames of one shape")
        raw = torch.stack(video)  # [B, T, C, H, W] uint8
        pixels = self.pixels(raw.repeat_interleave(self.repeats(raw.shape[1] // S), dim=1))
        patches = self.patchify(pixels)
        B, N = patches.shape[:2]
        K = N // S
        positions = (torch.arange(1, S + 1) * K - 1)[None].expand(B, -1).clone()
        none = torch.full((B,), -1, dtype=torch.long)
        return Batch({"patches": patches}, positions, none, none.clone())

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 video [B, T, C, H, W] → the model's normalised float input at its size."""
        B, T, C, H, W = x.shape
        if C not in (1, self.channels):
            raise DataError(f"frames have {C} channels but {self.identity.id} reads "
                            f"{self.channels}; use a task drawn in 1 or {self.channels} channels")
        y = x.reshape(B * T, C, H, W).float() / 255.0
        if C != self.channels:
            y = y.expand(-1, self.channels, -1, -1)
        if (H, W) != (self.size, self.size):
            y = F.interpolate(y, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=max(H, W) > self.size)
        y = (y - self.mean[:, None, None]) / self.std[:, None, None]
        return y.reshape(B, T, self.channels, self.size, self.size)

    def patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] → [B, N, tubelet·C·p·p]: each token's own pixels, step-major (a
        prefix token per frame gets zeros)."""
        B, T, C, H, W = pixels.shape
        g, p, ts = self.grid, self.patch, self.tubelet
        x = pixels.reshape(B, T // ts, ts, C, g, p, g, p).permute(0, 1, 4, 6, 2, 3, 5, 7)
        x = x.reshape(B, T // ts, g * g, ts * C * p * p)
        if self.prefix:
            x = torch.cat([x.new_zeros(B, T // ts, self.prefix, x.shape[-1]), x], 2)
        return x.reshape(B, -1, x.shape[-1])

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """The inverse of `patchify`."""
        g, p, ts, C = self.grid, self.patch, self.tubelet, self.channels
        B = patches.shape[0]
        x = patches.reshape(B, -1, self.prefix + g * g, ts, C, p, p)[:, :, self.prefix:]
        x = x.reshape(B, -1, g, g, ts, C, p, p).permute(0, 1, 4, 5, 2, 6, 3, 7)
        return x.reshape(B, -1, C, g * p, g * p)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._run(self.unpatchify(batch.inputs["patches"]))

    def random_init(self, seed: int) -> VisionAdapter:
        import transformers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = transformers.AutoModel.from_config(self.model.config).to(self.model.dtype)
        ident = self.identity
        identity = ModelIdentity(id=f"{ident.id}@random-init", revision=f"seed{seed}",
                                 sha256=state_sha256(model), adapter=ident.adapter,
                                 n_params=ident.n_params, dtype=ident.dtype,
                                 architecture=ident.architecture, width=ident.width,
                                 depth=ident.depth)
        return type(self)(model, identity, mean=tuple(self.mean.tolist()),
                          std=tuple(self.std.tolist()), device=self.device)


class VJEPA2Adapter(VisionAdapter):
    """V-JEPA 2 (`VJEPA2Model`): video in tubelets, with its predictor's latent surprise."""

    def _layer_modules(self) -> dict[str, nn.Module]:
        enc: Any = self.model.encoder
        return {"embed": enc.embeddings, **{f"block.{i}": m for i, m in enumerate(enc.layer)}}

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state

    def surprise_kinds(self) -> tuple[str, ...]:
        return ("latent",)

    @torch.no_grad()
    def step_predictions(self, batch: Batch, kind: str | None = None):
        from probekit.adapters.surprise import latent_predictions

        self._surprise_kind(kind)
        pixels = self.unpatchify(batch.to(self.device).inputs["patches"])
        B, S = batch.positions.shape
        K = self.step_width(batch)
        frames = pixels.shape[1] // S  # per step, repeats included
        predictor: Any = self.model.predictor
        encoded, expected, context = [], [], None
        for s in range(S):
            seen = self._run(pixels[:, :(s + 1) * frames])  # steps 0 … s
            encoded.append(seen[:, s * K:])
            if context is None:
                expected.append(seen[:, :K])  # step 0: nothing predicts it
            else:
                ctx = torch.arange(s * K, device=self.device)[None].expand(B, -1)
                tgt = torch.arange(s * K, (s + 1) * K, device=self.device)[None].expand(B, -1)
                expected.append(predictor(encoder_hidden_states=context, context_mask=[ctx],
                                          target_mask=[tgt]).last_hidden_state)
            context = seen
        enc, exp = torch.cat(encoded, 1), torch.cat(expected, 1)
        # latent_predictions compares predicted[:, j - 1] (made before j) with encoded[:, j]
        return latent_predictions(torch.cat([exp[:, 1:], exp[:, -1:]], 1), enc,
                                  batch.positions)


class ImageAdapter(VisionAdapter):
    """An image encoder (I-JEPA, ViT, DINOv2, …) read frame by frame: a step's latents are its
    frames' tokens. No predictor, so no surprise."""

    def __init__(self, model: nn.Module, identity: ModelIdentity, **kwargs: Any):
        self._frames = 1
        super().__init__(model, identity, **kwargs)
        with torch.no_grad():
            blank = torch.zeros(1, self.channels, self.size, self.size, device=self.device,
                                dtype=next(model.parameters()).dtype)
            n = self.model(pixel_values=blank).last_hidden_state.shape[1]
        self._prefix = n - self.grid * self.grid
        if self._prefix < 0:
            raise ModelError(f"{identity.id} makes {n} tokens from an image of "
                             f"{self.grid * self.grid} patches; probekit reads encoders that "
                             "keep one token per patch (wrap it with ModuleAdapter otherwise)")

    @property
    def prefix(self) -> int:
        return self._prefix

    def _layer_modules(self) -> dict[str, nn.Module]:
        from probekit.adapters.hf import _find_blocks, _find_embed

        blocks = _find_blocks(self.model)
        return {"embed": _find_embed(self.model, blocks),
                **{f"block.{i}": m for i, m in enumerate(blocks)}}

    def _tokens(self, h: torch.Tensor) -> torch.Tensor:
        return h.reshape(h.shape[0] // self._frames, -1, h.shape[-1])

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        B, T = pixels.shape[:2]
        self._frames = T  # how `_tokens` regroups a layer's [B·T, tokens, D] per episode
        try:
            out = self.model(pixel_values=pixels.flatten(0, 1)).last_hidden_state
        finally:
            self._frames = 1
        return out.reshape(B, -1, out.shape[-1])


def is_vision(model_type: Any) -> bool:
    return model_type in VIDEO_TYPES or model_type in IMAGE_TYPES


def model_type(name: str, revision: str | None = None) -> str | None:
    """The `model_type` in the config.json of a folder or Hub id (None where it cannot be
    read: the text adapter's loader then says why)."""
    from probekit.adapters.hf import check_config_file

    path = _config_file(name, "config.json", revision)
    if path is None:
        return None
    try:
        config = check_config_file(path)
    except ModelError:
        return None
    t = config.get("model_type")
    return t if isinstance(t, str) else None


def _config_file(name: str, file: str, revision: str | None) -> Path | None:
    """`file` of a folder or Hub id (from the Hub cache, downloaded if allowed), or None."""
    from probekit.adapters.hf import local_path

    local = local_path(name)
    if local.is_dir():
        return local / file if (local / file).is_file() else None
    try:
        from transformers.utils import cached_file

        got = cached_file(name, file, revision=revision,
                          _raise_exceptions_for_missing_entries=False,
                          _raise_exceptions_for_connection_errors=False)
    except Exception:  # no config to read: the loader reports the model's real problem
        return None
    return Path(got) if got else None


def _side(value: Any, name: str) -> int:
    """A square size from a config (an int, or a [height, width] pair of equal sides)."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ModelError(f"{name}: probekit reads square images and patches, the config "
                             f"sets {list(value)}")
        value = value[0]
    return int(value)


def _per_channel(values: Any, channels: int, name: str) -> tuple[float, ...]:
    v = [float(values)] if isinstance(values, (int, float)) else [float(x) for x in values]
    if len(v) == 1:
        v = v * channels
    if len(v) != channels or not all(math.isfinite(x) for x in v):
        raise ModelError(f"{name}: the processor's image mean/std {values!r} do not give one "
                         f"finite value per channel ({channels}); fix preprocessor_config.json")
    return tuple(v)


def processor_stats(name: str, revision: str | None = None
                    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the checkpoint's image or video processor; ImageNet's where it has
    none."""
    from probekit.adapters.hf import check_config_file

    for file in PROCESSOR_FILES:
        path = _config_file(name, file, revision)
        if path is not None:
            config = check_config_file(path)
            return (config.get("image_mean", IMAGENET_MEAN), config.get("image_std", IMAGENET_STD))
    return IMAGENET_MEAN, IMAGENET_STD


def load(name_or_path: str, *, revision: str | None = None, device: str | torch.device = "auto",
         trust_remote_code: bool = False, dtype: torch.dtype | None = None,
         model_id: str | None = None) -> VisionAdapter:
    """A vision checkpoint (folder or Hub id, one path) as its adapter: safetensors weights
    only, checked like a text checkpoint's (config against weights, nothing left at random)."""
    from probekit.adapters.hf import (
        check_config,
        check_config_file,
        check_loaded,
        check_size,
        checkpoint_identity,
        loading,
        local_path,
        looks_like_hub_id,
    )

    resolve_device(device)
    local = local_path(name_or_path)
    is_local = local.exists() or not looks_like_hub_id(name_or_path)
    if is_local:
        if not (local / "config.json").is_file():
            raise ModelError(f"{str(local)!r} has no config.json; a vision checkpoint folder "
                             "holds config.json and model.safetensors")
        if not any(local.glob("*.safetensors")):
            raise ModelError(f"{str(local)!r} has no model.safetensors; probekit reads vision "
                             "checkpoints from safetensors only (save_pretrained() writes it)")
        check_config_file(local / "config.json")
    with loading(name_or_path, is_local) as transformers:
        config = transformers.AutoConfig.from_pretrained(name_or_path, revision=revision,
                                                         trust_remote_code=trust_remote_code)
        check_config(name_or_path, config)
        if is_local:
            check_size(local, config, transformers.AutoModel, trust_remote_code)
        model, info = transformers.AutoModel.from_pretrained(
            name_or_path, revision=revision, dtype=dtype, trust_remote_code=trust_remote_code,
            use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=True)
    check_loaded(name_or_path, model, info)
    mean, std = processor_stats(name_or_path, revision)
    identity = checkpoint_identity(name_or_path, model, config, revision, model_id, "vision")
    cls = VJEPA2Adapter if config.model_type in VIDEO_TYPES else ImageAdapter
    return cls(model, identity, mean=mean, std=std, device=device)
