"""Hugging Face checkpoints (causal LMs and encoders), from a local folder or a Hub id.

Layer names: `embed` (the input to the first block, i.e. `hidden_states[0]`), then `block.i`, the
residual stream after block i (pre final norm). Step positions come from the fast tokenizer's
offset mapping, never from guessing.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from probekit.adapters.base import (
    Adapter,
    Batch,
    ModelIdentity,
    files_sha256,
    n_params,
    resolve_device,
    state_sha256,
)
from probekit.errors import DataError, ModelError, NetworkError, TooLongError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model",
                   "spiece.model")
# Beside the weights, what decides a checkpoint's latents (hashed into its identity, so that a
# changed config or tokenizer never reuses cached latents).
IDENTITY_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                  *TOKENIZER_FILES)
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, ImportError, SafetensorError,
               pickle.UnpicklingError)
MAX_CONFIG_BYTES = 2 ** 20  # config.json (a large model's is a few KB)
MAX_LAYERS = 1024  # blocks a config may build (the largest public models have under 200)
MAX_SIZE = 2 ** 24  # any other size in config.json: vocabulary, width, heads, positions
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
SIZE_KEYS = (*LAYER_KEYS, "vocab_size", "hidden_size", "n_embd", "d_model",
             "num_attention_heads", "n_head", "intermediate_size", "n_inner",
             "max_position_embeddings", "n_positions", "n_ctx")
BLOCK_KEY = re.compile(r"(?:^|\.)(h|layers|layer|blocks|block)\.(\d+)\.")


def looks_like_hub_id(name: str) -> bool:
    """`name` or `org/name` made of Hub-safe characters (not a path)."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(
        p and not p.startswith((".", "-")) and all(c.isalnum() or c in "-_." for c in p)
        for p in parts)


def local_path(name: str) -> Path:
    """`name` as a path, with `~` expanded where it names a home folder (`~x` may not)."""
    try:
        return Path(name).expanduser()
    except RuntimeError:
        return Path(name)


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
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"{str(folder)!r} has no tokenizer files (tokenizer.json, vocab.json, "
                         "…); save the tokenizer into it with tokenizer.save_pretrained()")
    check_config_file(folder / "config.json")


def check_config_file(path: Path) -> dict[str, Any]:
    """config.json read with bounds (MAX_CONFIG_BYTES, MAX_JSON_DEPTH) before transformers
    parses it: an object whose layer count is a whole number in [1, MAX_LAYERS]."""
    from probekit.io import parse_json, read_text

    config = parse_json(read_text(path, MAX_CONFIG_BYTES, "MAX_CONFIG_BYTES", ModelError),
                        str(path), ModelError)
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(config).__name__}; save "
                         "the model's config with save_pretrained()")
    for key in SIZE_KEYS:
        n = config.get(key)
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int):
            raise ModelError(f"{path}: {key} is {n!r}; it must be a whole number")
        if key not in LAYER_KEYS and not 1 <= n <= MAX_SIZE:
            raise ModelError(f"config.json of {str(path.parent)!r} sets {key} to {n}; it must be "
                             f"in [1, {MAX_SIZE:,}] (MAX_SIZE): the config does not belong to "
                             "these weights; restore the config saved with them")
        if key in LAYER_KEYS and not 1 <= n <= MAX_LAYERS:
            raise ModelError(f"config.json of {str(path.parent)!r} sets the number of blocks "
                             f"({key}) to {n}; it must be in [1, {MAX_LAYERS}] (MAX_LAYERS): the "
                             "config does not belong to these weights; restore the config saved "
                             "with them")
    return config


def check_size(folder: Path, config: Any, auto: Any, trust_remote_code: bool) -> None:
    """Read the safetensors headers (which also finds corrupt or truncated files) and refuse a
    config that describes a bigger model than the weights hold, before allocating it."""
    files = weight_files(folder)
    if any(f.suffix != ".safetensors" for f in files):
        return  # pickle-based .bin files are only read by the loader, with weights_only=True
    held = 0
    blocks: dict[str, set[int]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():
                    held += math.prod(fh.get_slice(k).get_shape())
                    m = BLOCK_KEY.search(k)
                    if m:
                        blocks.setdefault(k[:m.end(1)], set()).add(int(m.group(2)))
        except (SafetensorError, OSError) as e:
            raise ModelError(f"weights file {str(f)!r} is corrupt or truncated ({e}); download or "
                             "save the checkpoint again") from None
    n = getattr(config, "num_hidden_layers", None)
    if blocks and isinstance(n, int) and not isinstance(n, bool) \
            and n not in {max(ix) + 1 for ix in blocks.values()}:  # no stack has n blocks
        container, indexes = max(blocks.items(), key=lambda kv: len(kv[1]))
        raise ModelError(f"config.json in {str(folder)!r} builds {n} block{'s' * (n != 1)} but "
                         f"its weights "
                         f"hold {max(indexes) + 1} ({container}.0 … {container}.{max(indexes)}): "
                         "the config does not belong to these weights; restore the config "
                         "saved with them")
    if getattr(config, "quantization_config", None) is not None:
        return  # packed weights hold fewer values than parameters
    try:
        with torch.device("meta"):
            skeleton = auto.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # a model that cannot be built on "meta": the real load reports errors
        return
    needed = sum(p.numel() for p in skeleton.parameters())
    if needed > 1.1 * held + 1024:
        raise ModelError(f"config.json in {str(folder)!r} describes a model of {needed:,} "
                         f"parameters but its weights hold {held:,} values: the config does not "
                         "belong to these weights; restore the config saved with them")


def _load_config(transformers: Any, name: str, revision: str | None,
                 trust_remote_code: bool) -> Any:
    """AutoConfig, with any failure to build the config (a field of the wrong type, say) as a
    one-line ModelError; load errors and network failures pass through to the caller."""
    return _built(transformers.AutoConfig, name, revision, trust_remote_code, lambda e, text: (
        f"config.json of {name!r} is not a valid config ({text[:200]}); restore the config "
        "saved with the weights"))


def _load_tokenizer(transformers: Any, name: str, revision: str | None,
                    trust_remote_code: bool) -> Any:
    """AutoTokenizer, with any failure to build it from its files (a list where an object
    belongs, a token of the wrong type) as a one-line ModelError."""
    return _built(transformers.AutoTokenizer, name, revision, trust_remote_code, lambda e, text: (
        f"the tokenizer files of {name!r} cannot be loaded ({type(e).__name__}: {text[:200]}); "
        "save the tokenizer again with tokenizer.save_pretrained()"))


def _built(auto: Any, name: str, revision: str | None, trust_remote_code: bool,
           message: Any) -> Any:
    """`auto.from_pretrained(name)`; a failure to build the object from its files becomes a
    ModelError with `message(error, its text on one line)`, while load errors and network
    failures pass through to the caller."""
    try:
        return auto.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except LOAD_ERRORS:
        raise
    except Exception as e:
        if is_network_failure(e):
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        raise ModelError(message(e, text)) from None


def check_config(name: str, config: Any) -> None:
    """Refuse, before anything is allocated, a config that builds no blocks (`n_layer: 0`):
    the config is at fault, not the adapter."""
    n = getattr(config, "num_hidden_layers", None)
    if isinstance(n, int) and not isinstance(n, bool) and n < 1:
        raise ModelError(f"config.json of {name!r} sets the number of blocks (num_hidden_layers"
                         f", n_layer) to {n}: the config does not belong to these weights; "
                         "restore the config saved with them")


def check_vocabulary(name: str, model: nn.Module, tokenizer: Any) -> None:
    """Every token id the tokenizer can produce must have a row in the embedding table."""
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embed, "num_embeddings", None)
    if rows is None:
        return
    try:
        top = max(tokenizer.get_vocab().values(), default=-1)
    except Exception:  # a tokenizer without a vocabulary listing: nothing to compare
        return
    if top >= rows:
        raise ModelError(f"the tokenizer of {name!r} has token ids up to {top} but the model's "
                         f"embedding table has {rows} rows: the tokenizer does not belong to "
                         "this model; save the tokenizer it was trained with into the folder")


def is_network_failure(e: BaseException) -> bool:
    """A failure to reach the Hub (not a bad id): transport errors, or transformers' message
    for them."""
    try:
        import httpx2

        if isinstance(e, httpx2.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(e)
    return "couldn't connect to" in text or "offline mode" in text.lower()


def check_loaded(name: str, model: nn.Module, info: dict[str, Any]) -> None:
    """Refuse a load that left weights at random init or dropped blocks: missing weights (a
    pooler aside), block weights the config has no block for, or shapes that differ."""
    why = ""
    if info["mismatched_keys"]:
        key, saved, wanted = sorted(info["mismatched_keys"])[0]
        why = f"weight {key} is {tuple(saved)} in the file but the config makes {tuple(wanted)}"
    missing = sorted(k for k in info["missing_keys"] if "pooler" not in k)
    if not why and missing:
        why = f"{len(missing)} weights the config needs are not in the file (first: {missing[0]})"
    blocks = _find_blocks(model)
    container = next(n for n, m in model.named_modules() if m is blocks).rsplit(".", 1)[-1]
    extra = sorted(k for k in info["unexpected_keys"]
                   if re.search(rf"(^|\.){re.escape(container)}\.\d+\.", k))
    if not why and extra:
        why = (f"the file holds weights of blocks the config does not build (first: {extra[0]}; "
               f"the config builds {len(blocks)})")
    if why:
        raise ModelError(f"config.json and the weights of {name!r} do not match: {why}; restore "
                         "the config saved with these weights, or save the checkpoint again")


def load_error(name: str, e: Exception) -> str:
    """One line saying why `name` did not load and what would."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, pickle.UnpicklingError):
        return (f"could not load model {name!r}: its pytorch_model.bin holds Python objects "
                "besides tensors, which probekit never unpickles (torch.load weights_only=True); "
                "use a safetensors checkpoint")
    if isinstance(e, SafetensorError):
        return (f"could not load model {name!r}: a weights file is corrupt or truncated ({first});"
                " download or save the checkpoint again")
    if "trust_remote_code" in text or "custom code" in text:
        return (f"model {name!r} ships its own Python code, which probekit runs only with "
                "--trust-remote-code (trust_remote_code=True); read that code first")
    return f"could not load model {name!r}: {first}"


@contextmanager
def loading(name: str, is_local: bool) -> Iterator[Any]:
    """Around loading checkpoint `name`: yields `transformers`, with its load reports quiet
    and any failure as one line (NetworkError where a Hub id could not be reached, else
    ModelError)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # one line per error, no bars
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # our one line replaces load reports
    try:
        yield transformers
    except LOAD_ERRORS as e:
        if not is_local and is_network_failure(e):
            raise NetworkError(f"could not download model {name!r}: "
                               f"{load_error(name, e).split(': ', 1)[-1]}; check "
                               "the network (or HF_HUB_OFFLINE)") from None
        raise ModelError(load_error(name, e)) from None
    except Exception as e:  # httpx transport errors are not OSErrors
        if not is_local and is_network_failure(e):
            raise NetworkError(f"could not download model {name!r}: "
                               f"{type(e).__name__}: {e}; check the network") from None
        raise
    finally:
        transformers.utils.logging.set_verbosity(verbosity)


def checkpoint_identity(name: str, model: nn.Module, config: Any, revision: str | None,
                        model_id: str | None, adapter: str) -> ModelIdentity:
    """Who a loaded checkpoint is: a local folder by the hash of its weight and identity
    files (`local/<folder>`), a Hub id by the hash of its weights and its commit."""
    local = local_path(name)
    if local.exists() or not looks_like_hub_id(name):
        folder = local.resolve()
        sha = files_sha256(weight_files(folder) + [folder / f for f in IDENTITY_FILES
                                                   if (folder / f).is_file()])
        ident = model_id or f"local/{folder.name}"
        rev = revision or sha[:12]
    else:
        sha = state_sha256(model)
        ident = model_id or name
        rev = revision or getattr(config, "_commit_hash", None) or "main"
    return ModelIdentity(id=ident, revision=rev, sha256=sha, adapter=adapter,
                         n_params=n_params(model), dtype=str(model.dtype).split(".")[-1],
                         family=getattr(config, "probekit_family", None),
                         alpha=getattr(config, "probekit_alpha", None),
                         architecture=getattr(config, "model_type", None),
                         width=_config_int(config, "hidden_size"),
                         depth=_config_int(config, "num_hidden_layers"))


def _config_int(config: Any, name: str) -> int | None:
    """A positive integer the config holds under `name` (transformers maps each model's own
    names, e.g. GPT-2's n_embd and n_layer, onto hidden_size and num_hidden_layers), else None."""
    v = getattr(config, name, None)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


class HFAdapter(Adapter):
    """A `transformers` model with its fast tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any, identity: ModelIdentity,
                 device: str | torch.device = "auto", max_length: int | None = None,
                 truncate: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"the tokenizer of {identity.id} has no offset mapping (it is not a "
                             "fast tokenizer); probekit finds step positions through offsets — "
                             "save a tokenizers-backed (PreTrainedTokenizerFast) tokenizer")
        if tokenizer.pad_token is None:  # GPT-2 style: batches pad with a masked-out token
            if tokenizer.eos_token is None:
                raise ModelError(f"the tokenizer of {identity.id} has neither a pad nor an "
                                 "end-of-sequence token; set tokenizer.pad_token and save it")
            tokenizer.pad_token = tokenizer.eos_token
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
        if self.has_token_head:
            self.head_layer = f"block.{len(self._blocks) - 1}"

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, revision: str | None = None,
                        device: str | torch.device = "auto", trust_remote_code: bool = False,
                        dtype: torch.dtype | None = None, truncate: bool = False,
                        model_id: str | None = None) -> HFAdapter:
        resolve_device(device)  # a bad device fails before any weights are read
        local = local_path(name_or_path)
        is_local = local.exists() or not looks_like_hub_id(name_or_path)
        if is_local:
            check_folder(local)
        with loading(name_or_path, is_local) as transformers:
            config = _load_config(transformers, name_or_path, revision, trust_remote_code)
            check_config(name_or_path, config)
            archs = getattr(config, "architectures", None) or []
            causal = any(isinstance(a, str) and a.endswith(("ForCausalLM", "LMHeadModel"))
                         for a in (archs if isinstance(archs, (list, tuple)) else [archs]))
            auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
            if is_local:
                check_size(local, config, auto, trust_remote_code)
            model, info = auto.from_pretrained(name_or_path, revision=revision, dtype=dtype,
                                               trust_remote_code=trust_remote_code,
                                               output_loading_info=True,
                                               ignore_mismatched_sizes=True)
            tokenizer = _load_tokenizer(transformers, name_or_path, revision, trust_remote_code)
        check_loaded(name_or_path, model, info)
        check_vocabulary(name_or_path, model, tokenizer)
        identity = checkpoint_identity(name_or_path, model, config, revision, model_id, "hf")
        return cls(model, tokenizer, identity, device=device, truncate=truncate)

    # --- layers ---------------------------------------------------------------------------

    def layers(self) -> list[str]:
        return ["embed"] + [f"block.{i}" for i in range(len(self._blocks))]

    def module(self, layer: str) -> nn.Module:
        self.check_layers([layer])
        return self._embed if layer == "embed" else self._blocks[int(layer.split(".")[1])]

    def head_module(self) -> nn.Module | None:
        return self.model.get_output_embeddings() if self.has_token_head else None

    # --- inputs ---------------------------------------------------------------------------

    def word_ids(self, words: list[str], vocabulary: list[str]) -> list[int]:
        """The id of each word's first token as the tokenizer reads it after a space, in running
        text (so byte-level BPE tokenizers give the space-prefixed token)."""
        out = []
        for w in words:
            enc = self.tokenizer("x " + w, return_offsets_mapping=True, add_special_tokens=False)
            ids = [i for i, (lo, hi) in zip(enc["input_ids"], enc["offset_mapping"])
                   if hi > 2 and lo <= 2]
            if not ids:
                raise ModelError(f"the tokenizer of {self.identity.id} maps the word {w!r} to no "
                                 "token")
            out.append(int(ids[0]))
        return out

    def batch(self, episodes: list[dict[str, Any]]) -> Batch:
        texts = [e["text"] for e in episodes]
        enc = self.tokenizer(texts, return_offsets_mapping=True, padding=True,
                             return_tensors="pt", add_special_tokens=False)
        length = enc["input_ids"].shape[1]
        cut = self.max_length if self.max_length and length > self.max_length else None
        if cut and not self.truncate:
            raise TooLongError(f"episodes are {length} tokens long but {self.identity.id} reads "
                            f"at most {cut}; use a task with shorter episodes or pass "
                            "truncate=True (--truncate) to cut the text after the last step")
        n_steps = len(episodes[0]["step_spans"])
        for ep in episodes:
            if len(ep["step_spans"]) != n_steps:
                raise DataError("episodes in one batch must have the same number of steps")
        offsets = enc["offset_mapping"]
        starts, ends = offsets[..., 0], offsets[..., 1]  # [B, T] character offsets per token
        valid = enc["attention_mask"].bool() & (ends > starts)
        token = torch.arange(length)
        # a step's position: the last token overlapping its span (all steps at once, [B, S, T])
        spans = torch.tensor([ep["step_spans"] for ep in episodes],
                             dtype=torch.long).reshape(len(episodes), n_steps, 2)
        lo, hi = spans[..., :1], spans[..., 1:]
        overlap = valid[:, None] & (starts[:, None] < hi) & (ends[:, None] > lo)
        positions = torch.where(overlap, token, -1).amax(-1) if length else \
            torch.full((len(episodes), n_steps), -1, dtype=torch.long)
        bad = (positions < 0) | (positions >= cut if cut else torch.zeros_like(positions).bool())
        if bad.any():  # the first bad step, in the order episode by episode, step by step
            b, s = (int(i) for i in torch.nonzero(bad)[0])
            ep = episodes[b]
            if positions[b, s] < 0:
                raise DataError(f"step {s} of episode {ep['text'][:40]!r}… is not covered "
                                "by any token; the tokenizer's offsets do not map this text")
            raise DataError(f"step {s} of episode {ep['text'][:40]!r}… ends at token "
                            f"{int(positions[b, s]) + 1} but {self.identity.id} reads at most "
                            f"{cut}; truncation cuts only the text after the last step, "
                            "so use a task with shorter episodes")
        # the query: the token holding the query span's first character, whose prediction is
        # read at the position before it (where that position exists and is read)
        q0 = torch.tensor([ep.get("query_span", [-1, -1])[0] for ep in episodes],
                          dtype=torch.long)[:, None]
        holds = valid & (starts <= q0) & (ends > q0) & (q0 >= 0)
        first = torch.where(holds, token, length).amin(-1) if length else \
            torch.zeros(len(episodes), dtype=torch.long)
        read = (first < length) & (first > 0) & (first <= (cut or length))
        query = torch.where(read, first - 1, -1)
        answer = torch.where(read, enc["input_ids"].gather(
            1, first.clamp(max=max(length - 1, 0))[:, None])[:, 0] if length else 0, -1)
        inputs = {"input_ids": enc["input_ids"][:, :cut],
                  "attention_mask": enc["attention_mask"][:, :cut]}
        return Batch(inputs, positions, query, answer)

    def forward(self, batch: Batch) -> torch.Tensor:
        out = self.model(**batch.inputs, use_cache=False) if self.has_token_head else \
            self.model(**batch.inputs)
        return out.logits if self.has_token_head else out.last_hidden_state

    def random_init(self, seed: int) -> HFAdapter:
        import transformers

        torch.manual_seed(seed)
        auto = transformers.AutoModelForCausalLM if self.has_token_head else transformers.AutoModel
        model = auto.from_config(self.model.config).to(self.model.dtype)
        ident = self.identity
        identity = ModelIdentity(id=f"{ident.id}@random-init", revision=f"seed{seed}",
                                 sha256=state_sha256(model), adapter=ident.adapter,
                                 n_params=ident.n_params, dtype=ident.dtype,
                                 family=ident.family, alpha=ident.alpha,
                                 architecture=ident.architecture, width=ident.width,
                                 depth=ident.depth)
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
    model has one (GPT-2 style: token + position embeddings), or the whole embedding module of
    an encoder (BERT style, found beside the encoder that holds the blocks), else the token
    embeddings. The nearest module holding the blocks is searched first."""
    holders = [(len(name.split(".")) if name else 0, m) for name, m in model.named_modules()
               if m is not blocks and any(sub is blocks for sub in m.modules())]
    for _, m in sorted(holders, key=lambda x: -x[0]):
        for attr in ("drop", "embed_dropout", "emb_dropout", "embeddings"):
            if isinstance(getattr(m, attr, None), nn.Module):
                return getattr(m, attr)
    return model.get_input_embeddings()
