"""Hugging Face checkpoints (causal LMs and encoders), from a local folder or a Hub id.

Layer names: `embed` (the input to the first block, i.e. `hidden_states[0]`), then `block.i`, the
residual stream after block i (pre final norm). Step positions come from the fast tokenizer's
offset mapping, never from guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from probekit.adapters.base import (Adapter, Batch, ModelIdentity, files_sha256, n_params,
                                    resolve_device, state_sha256)
from probekit.errors import DataError, ModelError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def looks_like_hub_id(name: str) -> bool:
    """`name` or `org/name` made of Hub-safe characters (not a path)."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(
        p and not p.startswith((".", "-")) and all(c.isalnum() or c in "-_." for c in p)
        for p in parts)


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for pat in WEIGHT_PATTERNS for p in folder.glob(pat))


def check_folder(folder: Path) -> None:
    """A local checkpoint folder must hold a config and weights."""
    if not folder.is_dir():
        raise ModelError(f"model path {str(folder)!r} is not a folder; pass a checkpoint folder "
                         "(config.json + model.safetensors), a shipped checkpoint name or a Hub id")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{str(folder)!r} has no config.json; a Hugging Face checkpoint folder "
                         "holds config.json, model.safetensors and the tokenizer files")
    if not weight_files(folder):
        raise ModelError(f"{str(folder)!r} has no weights (model.safetensors or "
                         "pytorch_model.bin); save the model with save_pretrained()")


class HFAdapter(Adapter):
    """A `transformers` model with its fast tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any, identity: ModelIdentity,
                 device: str | torch.device = "auto", max_length: int | None = None,
                 truncate: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"the tokenizer of {identity.id} has no offset mapping (it is not a "
                             "fast tokenizer); probekit finds step positions through offsets — "
                             "save a tokenizers-backed (PreTrainedTokenizerFast) tokenizer")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.identity = identity
        self.truncate = truncate
        config = model.config
        self.max_length = max_length or getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None)
        self.has_token_head = hasattr(model, "get_output_embeddings") and \
            model.get_output_embeddings() is not None
        self._blocks = _find_blocks(model)
        self._embed = _find_embed(model, self._blocks)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, revision: str | None = None,
                        device: str | torch.device = "auto", trust_remote_code: bool = False,
                        dtype: torch.dtype | None = None, truncate: bool = False,
                        model_id: str | None = None) -> "HFAdapter":
        import transformers

        transformers.utils.logging.disable_progress_bar()  # one line per error, no bars
        local = Path(name_or_path).expanduser()
        is_local = local.exists() or not looks_like_hub_id(name_or_path)
        if is_local:
            check_folder(local)
        try:
            config = transformers.AutoConfig.from_pretrained(
                name_or_path, revision=revision, trust_remote_code=trust_remote_code)
            archs = getattr(config, "architectures", None) or []
            causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
            auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
            model = auto.from_pretrained(name_or_path, revision=revision, dtype=dtype,
                                         trust_remote_code=trust_remote_code)
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"could not load model {name_or_path!r}: {first}") from None
        if is_local:
            folder = local.resolve()
            sha = files_sha256(weight_files(folder))
            ident = model_id or f"local/{folder.name}"
            rev = revision or sha[:12]
        else:
            sha = state_sha256(model)
            ident = model_id or name_or_path
            rev = revision or getattr(config, "_commit_hash", None) or "main"
        identity = ModelIdentity(id=ident, revision=rev, sha256=sha, adapter="hf",
                                 n_params=n_params(model), dtype=str(model.dtype).split(".")[-1],
                                 family=getattr(config, "probekit_family", None),
                                 alpha=getattr(config, "probekit_alpha", None))
        return cls(model, tokenizer, identity, device=device, truncate=truncate)

    # --- layers ---------------------------------------------------------------------------

    def layers(self) -> list[str]:
        return ["embed"] + [f"block.{i}" for i in range(len(self._blocks))]

    def module(self, layer: str) -> nn.Module:
        self.check_layers([layer])
        return self._embed if layer == "embed" else self._blocks[int(layer.split(".")[1])]

    # --- inputs ---------------------------------------------------------------------------

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        texts = [e["text"] for e in episodes]
        enc = self.tokenizer(texts, return_offsets_mapping=True, padding=True,
                             return_tensors="pt", add_special_tokens=False)
        length = enc["input_ids"].shape[1]
        if self.max_length and length > self.max_length:
            if not self.truncate:
                raise DataError(f"episodes are {length} tokens long but {self.identity.id} reads "
                                f"at most {self.max_length}; use a task with shorter episodes "
                                "or pass truncate=True (--truncate) to cut them")
            enc = {k: v[:, :self.max_length] for k, v in enc.items()}
        offsets = enc["offset_mapping"]
        mask = enc["attention_mask"].bool()
        n_steps = len(episodes[0]["step_spans"])
        positions = torch.full((len(episodes), n_steps), -1, dtype=torch.long)
        query = torch.full((len(episodes),), -1, dtype=torch.long)
        answer = torch.full((len(episodes),), -1, dtype=torch.long)
        for b, ep in enumerate(episodes):
            if len(ep["step_spans"]) != n_steps:
                raise DataError("episodes in one batch must have the same number of steps")
            starts, ends = offsets[b, :, 0], offsets[b, :, 1]
            valid = mask[b] & (ends > starts)
            for s, (lo, hi) in enumerate(ep["step_spans"]):
                hits = torch.nonzero(valid & (starts < hi) & (ends > lo)).flatten()
                if len(hits) == 0:
                    raise DataError(f"step {s} of episode {ep['text'][:40]!r}… is not covered "
                                    "by any token (truncated?)")
                positions[b, s] = hits[-1]
            q0 = ep.get("query_span", [-1, -1])[0]
            if q0 >= 0:
                hits = torch.nonzero(valid & (starts <= q0) & (ends > q0)).flatten()
                if len(hits) and hits[0] > 0:
                    query[b] = hits[0] - 1
                    answer[b] = enc["input_ids"][b, hits[0]]
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return Batch(inputs, positions, query, answer)

    def forward(self, batch: Batch) -> torch.Tensor:
        out = self.model(**batch.inputs, use_cache=False) if self.has_token_head else \
            self.model(**batch.inputs)
        return out.logits if self.has_token_head else out.last_hidden_state

    def random_init(self, seed: int) -> "HFAdapter":
        import transformers

        torch.manual_seed(seed)
        auto = transformers.AutoModelForCausalLM if self.has_token_head else transformers.AutoModel
        model = auto.from_config(self.model.config).to(self.model.dtype)
        ident = self.identity
        identity = ModelIdentity(id=f"{ident.id}@random-init", revision=f"seed{seed}",
                                 sha256=state_sha256(model), adapter=ident.adapter,
                                 n_params=ident.n_params, dtype=ident.dtype,
                                 family=ident.family, alpha=ident.alpha)
        return HFAdapter(model, self.tokenizer, identity, device=self.device,
                         max_length=self.max_length, truncate=self.truncate)


def _find_blocks(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks: the shallowest list as long as the layer count."""
    n = getattr(model.config, "num_hidden_layers", None)
    lists = [(name.count("."), name, m) for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) > 0 and (n is None or len(m) == n)]
    if not lists:
        raise ModelError(f"could not find the transformer blocks of {type(model).__name__}; "
                         "wrap it with probekit.adapters.ModuleAdapter and name its layers")
    return min(lists, key=lambda x: (x[0], -len(x[2])))[2]


def _find_embed(model: nn.Module, blocks: nn.ModuleList) -> nn.Module:
    """The module whose output is the first block's input: the embedding dropout where the
    model has one (GPT-2 style: token + position embeddings), else the token embeddings."""
    for name, m in model.named_modules():
        if any(child is blocks for child in m.children()):
            for attr in ("drop", "embed_dropout", "emb_dropout", "embeddings"):
                if isinstance(getattr(m, attr, None), nn.Module):
                    return getattr(m, attr)
    return model.get_input_embeddings()
