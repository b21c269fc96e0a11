"""Hand-built models over the boxes world's own tokens whose mechanism is known exactly, for the
causal axis's tests.

Both compute the world state at every step position (`block.0`: from the tokens they decode out
of the embedding layer's output, so patching the input changes it) and write each object's
location as a one-hot into its own 4-dimensional subspace U_i of a random rotation. They answer
the closing question at the query position in `block.1`, the layer feeding the head:

- `carried=True` reads the queried object's location from that subspace at the *last step*
  position: the state lives at (block.0, last step), in U_q, and nowhere else below the head;
- `carried=False` (a lookup) re-reads the last operation on the queried object from the op
  tokens; the state written at the step positions is decodable but never used.
"""

from __future__ import annotations

import torch
from torch import nn

from probekit.adapters import ModuleAdapter
from probekit.worlds.boxes import Boxes

OPS_TASK = """\
name: boxes-ops-tiny
version: 1
world: boxes
description: A small one-token-per-operation boxes task for the causal tests.
license: cc-by-4.0
knobs: {n_boxes: 3, n_objects: 3, n_ops: 6, style: ops}
splits:
  train: {size: 300, seed: 1}
  val: {size: 120, seed: 2}
  test: {size: 120, seed: 3}
targets:
  - {name: location, kind: class}
control: {feature: step_text_and_index, seed: 0}
counterfactual: {variable: destination, step: last_touch, readout: query}
"""

D = 96
SCALE = 3.0
LEAK = 1e-3


class _World(nn.Module):
    """What both blocks share: the vocabulary, the embedding table, the rotation."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.world = Boxes(n_boxes=3, n_objects=3, n_ops=6, style="ops")
        self.vocab = self.world.vocabulary()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(len(self.vocab), D, generator=g))
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
        self.register_buffer("rot", q)
        self.n_obj, self.n_loc = 3, 4  # locations: boxes 0..2, then out
        objects = self.world.objects
        self.op_obj = torch.full((len(self.vocab),), -1)  # token id -> object of its op
        self.op_dst = torch.full((len(self.vocab),), -1)  # -> where it puts it (3: out)
        self.word_obj = torch.full((len(self.vocab),), -1)  # object word -> object
        for i, name in enumerate(self.vocab):
            if ">" in name:
                obj, dst = name.split(">")
                if obj in objects and (dst == "out" or int(dst) < 3):
                    self.op_obj[i] = objects.index(obj)
                    self.op_dst[i] = 3 if dst == "out" else int(dst)
            elif name in objects:
                self.word_obj[i] = objects.index(name)
        self.dot, self.ask = self.vocab.index("."), self.vocab.index("?")
        self.answers = [self.vocab.index(w) for w in ("0", "1", "2", "nowhere")]

    @property
    def V(self) -> torch.Tensor:
        """[D, 4] the answer subspace at the query position."""
        lo = self.n_obj * self.n_loc
        return self.rot[:, lo:lo + self.n_loc]

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids read back from vectors by their nearest embedding."""
        return torch.cdist(h, self.table[None].expand(len(h), -1, -1)).argmin(-1)


class Embed(nn.Module):
    def __init__(self, w: _World):
        super().__init__()
        self.w = w

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.w.table[ids]


class State(nn.Module):
    """block.0: at each `.`, every object's location after that step, one-hot in U_i."""

    def __init__(self, w: _World):
        super().__init__()
        self.w = w

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = self.w
        ids = w.decode(h)
        B, T = ids.shape
        loc = torch.full((B, w.n_obj), 3, dtype=torch.long)
        onehots = torch.zeros(B, T, w.n_obj, w.n_loc, dtype=h.dtype)
        for t in range(T):
            obj, dst = w.op_obj[ids[:, t]], w.op_dst[ids[:, t]]
            hit = obj >= 0
            loc[hit, obj[hit]] = dst[hit]
            dot = ids[:, t] == w.dot
            onehots[dot, t] = torch.nn.functional.one_hot(loc[dot], w.n_loc).to(h.dtype)
        U = w.rot[:, :w.n_obj * w.n_loc]  # [D, objects·locations]
        return h + SCALE * onehots.reshape(B, T, -1) @ U.T


class Answer(nn.Module):
    """block.1 (feeds the head): writes the answer into V at the query position."""

    def __init__(self, w: _World, carried: bool):
        super().__init__()
        self.w, self.carried = w, carried

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = self.w
        ids = w.decode(h)
        B, T = ids.shape
        at = torch.arange(T)
        r = torch.where(ids == w.ask, at, T).amin(1)  # the query position (T: none)
        ok = r < T
        r = r.clamp(max=T - 1)
        rows = torch.arange(B)
        obj = w.word_obj[ids[rows, (r - 1).clamp_min(0)]]
        ok &= obj >= 0
        obj = obj.clamp_min(0)
        before = at[None] < r[:, None]
        if self.carried:
            last = torch.where((ids == w.dot) & before, at, -1).amax(1)
            ok &= last >= 0
            U = w.rot[:, :w.n_obj * w.n_loc].reshape(-1, w.n_obj, w.n_loc)  # [D, obj, loc]
            coords = torch.einsum("bd,bdl->bl", h[rows, last.clamp_min(0)],
                                  U.permute(1, 0, 2)[obj]) / SCALE  # differentiable
        else:
            mine = (w.op_obj[ids] == obj[:, None]) & before
            t = torch.where(mine, at, -1).amax(1)
            dst = torch.where(t >= 0, w.op_dst[ids[rows, t.clamp_min(0)]], 3)
            coords = torch.nn.functional.one_hot(dst, w.n_loc).to(h.dtype)
        # like attention, the query also sees every earlier position a little (so every
        # position can reach the readout), far too little to change the answer
        seen = (h * before[..., None]).sum(1) / before.sum(1, keepdim=True).clamp_min(1)
        write = SCALE * coords @ w.V.T + LEAK * seen  # [B, D]
        add = torch.zeros_like(h)
        add[rows[ok], r[ok]] = write[ok]
        return h + add


class Head(nn.Module):
    """Next-token logits from one position: the answer subspace's coordinates on the answer
    tokens, everything else far below."""

    def __init__(self, w: _World):
        super().__init__()
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w
        logits = torch.full((*x.shape[:-1], len(w.vocab)), -30.0, dtype=x.dtype,
                            device=x.device)
        logits[..., w.answers] = 4 * (x @ w.V) / SCALE
        return logits


class Synthetic(nn.Module):
    def __init__(self, carried: bool, seed: int = 0):
        super().__init__()
        self.w = _World(seed)
        self.embed, self.state = Embed(self.w), State(self.w)
        self.answer, self.head = Answer(self.w, carried), Head(self.w)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.answer(self.state(self.embed(ids))))


def scramble(module: nn.Module) -> None:
    """The random-init twin: a fresh embedding table and rotation (its decoding is noise)."""
    w = module.w
    w.table.copy_(torch.randn_like(w.table))
    w.rot.copy_(torch.linalg.qr(torch.randn_like(w.rot))[0])


def adapter(carried: bool) -> ModuleAdapter:
    model = Synthetic(carried)
    return ModuleAdapter(model, {"embed": "embed", "block.0": "state", "block.1": "answer"},
                         inputs="tokens", token_head=True, head="head", head_layer="block.1",
                         model_id=f"test/synthetic-{'carried' if carried else 'lookup'}",
                         init=scramble, device="cpu")
