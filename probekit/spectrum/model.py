"""The spectrum backbone: one small causal transformer over world tokens, observations or
frames.

The same network serves every point of the NTP → JEPA spectrum; only the training objective
(`probekit.spectrum.objective`) moves. Layers are named like the Hugging Face adapter's:
`embed` (the first block's input), then `block.i` (the residual stream after block i).

On frames (`inputs="frames"`, a task's `frames` view) one position is one step: its F frames
stacked as channels ([F·C, H, W], uint8) go through a small patch encoder (non-overlapping
`patch` × `patch` patches, a linear map each, GELU, then one linear map of all patches to
d_model, so where things are survives). The a = 0 end of the family on pixels is next-step
pixel prediction: `pixel_head` maps the latent at step t to the logits of step t + j's pixels
(j = 1 … horizon; binary cross-entropy against brightness / 255, which weighs the few bright
object pixels as much as the dark background does); a = 1 is the latent prediction of every
input (`probekit.spectrum.objective`), unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from probekit.errors import ModelError, TooLongError, UserError

INPUTS = ("tokens", "obs", "frames")
PATCH_DIM = 16  # features of one patch in the frames encoder


@dataclass(frozen=True)
class SpectrumConfig:
    """Architecture of one spectrum model (what `config.json` holds).

    `inputs`: "tokens" (ids into a world's vocabulary of `vocab_size` words), "obs" (vectors
    of `obs_dim` floats, one per step) or "frames" (one step's frames stacked as
    `frame_channels` channels of `frame_size` × `frame_size` uint8 pixels, read by a patch
    encoder of `patch`-pixel patches). `horizon` next-token heads (multi-token prediction)
    exist only where `token_head` is on, which needs token input; `pixel_head` is their
    counterpart on frames (next-step pixel logits). `predictor`: the model keeps the latent
    predictor it was trained with (alpha > 0, horizon 1), which gives it a latent surprise
    (`SpectrumModel.predict_next`).
    """

    inputs: str = "tokens"
    vocab_size: int = 0
    obs_dim: int = 0
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    max_len: int = 256
    token_head: bool = True
    horizon: int = 1
    predictor: bool = False
    frame_channels: int = 0
    frame_size: int = 0
    patch: int = 8
    pixel_head: bool = False

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise UserError(f"inputs {self.inputs!r} is not valid; valid: {', '.join(INPUTS)}")
        if self.token_head and self.inputs != "tokens":
            raise ModelError("a token head was asked of a continuous-only model (inputs='obs'); "
                             "next-token heads need token inputs — use inputs='tokens' or "
                             "token_head=False (alpha 1)")
        if self.pixel_head and self.inputs != "frames":
            raise ModelError("a pixel head was asked of a model without frame inputs; use "
                             "inputs='frames' or pixel_head=False")
        what = {"tokens": "vocab_size", "obs": "obs_dim", "frames": "frame_channels"}[self.inputs]
        if getattr(self, what) < 1:
            raise UserError(f"{what} must be at least 1 for inputs={self.inputs!r}, got "
                            f"{getattr(self, what)}")
        if self.inputs == "frames" and (self.patch < 1 or self.frame_size < self.patch
                                        or self.frame_size % self.patch):
            raise UserError(f"frame_size ({self.frame_size}) must be a positive multiple of "
                            f"patch ({self.patch})")
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_len", "horizon"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.predictor and self.horizon != 1:
            raise ModelError(f"a latent predictor is kept only at horizon 1 (it then predicts the "
                             f"next latent, which the latent surprise compares); got horizon "
                             f"{self.horizon}")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model ({self.d_model}) must be divisible by n_heads "
                            f"({self.n_heads})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """Pre-norm transformer block; its output is the residual stream (one tensor)."""

    def __init__(self, config: SpectrumConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config.d_model, config.n_heads)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEncoder(nn.Module):
    """One step's frames [.., F·C, H, W] uint8 → [.., d]: each `patch` × `patch` patch mapped
    linearly to PATCH_DIM features, GELU, then all patches (in place) to d."""

    def __init__(self, config: SpectrumConfig):
        super().__init__()
        self.shape = (config.frame_channels, config.frame_size, config.frame_size)
        self.patches = nn.Conv2d(config.frame_channels, PATCH_DIM, config.patch, config.patch)
        n = (config.frame_size // config.patch) ** 2
        self.out = nn.Linear(n * PATCH_DIM, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        if tuple(x.shape[-3:]) != self.shape:
            raise ModelError(f"frames of one step are {tuple(x.shape[-3:])} (F·C, H, W) but the "
                             f"model reads {self.shape}; use a task with the frames it was "
                             "trained on")
        p = F.gelu(self.patches(x.reshape(-1, *self.shape).float() / 255))
        return self.out(p.flatten(1)).reshape(*lead, -1)


class Embed(nn.Module):
    """Input embedding plus learned positions: token ids [B, T], observations [B, T, D] or
    frames [B, T, F·C, H, W]."""

    def __init__(self, config: SpectrumConfig):
        super().__init__()
        self.inputs = config.inputs
        self.input: nn.Module
        if config.inputs == "tokens":
            self.input = nn.Embedding(config.vocab_size, config.d_model)
        elif config.inputs == "obs":
            self.input = nn.Linear(config.obs_dim, config.d_model)
        else:
            self.input = PatchEncoder(config)
        self.position = nn.Embedding(config.max_len, config.d_model)
        self.max_len = config.max_len

    def content(self, x: torch.Tensor) -> torch.Tensor:
        """The input's own embedding, without position (what the latent predictor is told)."""
        return self.input(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.max_len:
            raise TooLongError(f"inputs are {T} positions long but the model reads at most "
                             f"{self.max_len}; use a task with shorter episodes")
        return self.content(x) + self.position(torch.arange(T, device=x.device))


class SpectrumModel(nn.Module):
    """Embedding, causal blocks, final LayerNorm and (optionally) `horizon` token heads.

    `forward(x)` returns next-token logits [B, T, V] where the model has a token head, else
    its latents [B, T, d] (the final LayerNorm's output). Every weight has PyTorch's default
    initialisation, so `reset_parameters` on each module gives the random-init twin.
    """

    def __init__(self, config: SpectrumConfig):
        super().__init__()
        self.config = config
        self.embed = Embed(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.heads = nn.ModuleList(nn.Linear(config.d_model, config.vocab_size)
                                   for _ in range(config.horizon if config.token_head else 0))
        pixels = config.frame_channels * config.frame_size ** 2
        self.pixels = nn.ModuleList(nn.Linear(config.d_model, pixels)
                                    for _ in range(config.horizon if config.pixel_head else 0))
        if config.predictor:
            self.predictor = latent_predictor(config)

    @property
    def has_token_head(self) -> bool:
        return len(self.heads) > 0

    @property
    def has_pixel_head(self) -> bool:
        return len(self.pixels) > 0

    def pixel_loss(self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Next-step pixel prediction on frames `x` [B, T, F·C, H, W] from latents `h`
        [B, T, d]: the mean over heads j = 1 … horizon of the binary cross-entropy between
        head j's logits at t and step t + j's brightness / 255, over valid steps."""
        out = []
        for j, head in enumerate(self.pixels, start=1):
            valid = mask[:, j:]
            goal = x[:, j:][valid].flatten(1).float() / 255
            out.append(F.binary_cross_entropy_with_logits(head(h[:, :-j][valid]), goal))
        return torch.stack(out).mean()

    def layer_names(self) -> dict[str, str]:
        """Layer name → dotted module path, input side first."""
        return {"embed": "embed", **{f"block.{i}": f"blocks.{i}" for i in
                                     range(len(self.blocks))}}

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output [B, T, d], in `layer_names()` order."""
        out = [self.embed(x)]
        for block in self.blocks:
            out.append(block(out[-1]))
        return out

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last block [B, T, d] (the latent target's source)."""
        return self.hidden_states(x)[-1]

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's output [B, T, d]: what the heads and the predictor read."""
        return self.norm(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.latents(x)
        return self.heads[0](h) if self.has_token_head else h

    def predict_next(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted, encoded) latents [B, T, d] for the latent surprise: `predicted[:, j]` is
        the predictor's output from [h_j ; e(x_{j+1})] (the latent it expects at j + 1; the
        last position, with nothing after it, is 0) and `encoded[:, j]` the LayerNorm-ed
        residual stream at j — the training target, read from the model itself rather than
        from the EMA copy it was trained against (which is not kept)."""
        if not hasattr(self, "predictor"):
            raise ModelError("this spectrum model keeps no latent predictor (config.predictor "
                             "is false)")
        hidden = self.hidden(x)
        h = self.norm(hidden)
        predicted = torch.zeros_like(h)
        predicted[:, :-1] = self.predictor(torch.cat([h[:, :-1], self.embed.content(x[:, 1:])],
                                                     -1))
        return predicted, F.layer_norm(hidden, hidden.shape[-1:])


def latent_predictor(config: SpectrumConfig) -> nn.Module:
    """The latent predictor: [h_t ; e(x_{t+1})] (2d) → the latent at t + horizon (d)."""
    return nn.Sequential(nn.Linear(2 * config.d_model, config.d_ff), nn.GELU(),
                         nn.Linear(config.d_ff, config.d_model))



def init_model(config: SpectrumConfig, seed: int) -> SpectrumModel:
    """A freshly initialised model, the same for the same seed (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SpectrumModel(config)
