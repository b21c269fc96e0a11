"""Distributed alignment search (Geiger et al.): learn the rank-k subspace whose interchange
makes the readout follow the source world.

For one cell (layer, positions, scope "layer"), an orthonormal basis Q [D, k] (the QR factor of
a free matrix) is trained by gradient descent on train pairs — the base run with
h ← h + Q Qᵀ (h_source − h) at the cell's positions must give the counterfactual class
(cross-entropy) — with the model frozen. The rank k and the number of steps are chosen on the
selection split's pairs (the best IIA seen, checked every `every` steps; ties go to the smaller
rank); the test split is never seen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from probekit.causal.interventions import Swap, gather_values, index_lists, run_edits
from probekit.causal.pairs import PairSet

EVERY = 25


def _data(engine: Any, cell: tuple[str, str, str], pairs: PairSet) -> list[dict[str, Any]]:
    """Per batch: the scored pairs' base inputs, labels, positions and source values."""
    layer, positions, _ = cell
    out = []
    for pb in pairs.batches(engine.adapter, engine.probe.batch_size):
        clean = engine.clean(pb)
        mask = pb.positions(positions, clean["labels"].position)
        rows = (clean["scored"] & mask.any(1)).nonzero().flatten()
        if len(rows) == 0:
            continue
        pos = index_lists(mask[rows])
        src = gather_values(clean["acts"]["source"][layer], rows, pos).detach().cpu()
        out.append({"pb": pb, "labels": clean["labels"], "rows": rows, "pos": pos, "src": src})
    return out


def _iia(engine: Any, layer: str, data: list[dict[str, Any]], Q: torch.Tensor) -> float:
    hits = total = 0
    with torch.no_grad():
        for d in data:
            z = run_edits(engine.adapter, engine.readout, d["pb"].base, d["rows"], d["labels"],
                          {layer: Swap(d["pos"], d["src"], Q).edit()})
            hits += int((z.argmax(-1).cpu() == d["labels"].cf[d["rows"]]).sum())
            total += len(d["rows"])
    return hits / max(total, 1)


def train_das(engine: Any, cell: tuple[str, str, str], train: PairSet, val: PairSet, *,
              ranks: tuple[int, ...] | list[int], steps: int, seed: int = 0, lr: float = 0.05,
              every: int = EVERY) -> dict[str, Any]:
    """The learned basis of one cell: {"basis": Q [D, k], "rank", "steps", "val_iia"}."""
    layer = cell[0]
    train_data, val_data = _data(engine, cell, train), _data(engine, cell, val)
    if not train_data or not val_data:
        return {"basis": None, "rank": 0, "steps": 0, "val_iia": None}
    width = train_data[0]["src"].shape[-1]
    params = [p for p in engine.adapter.model.parameters()]
    saved = [p.requires_grad for p in params]
    best: dict[str, Any] = {"val_iia": -1.0}
    try:
        for p in params:
            p.requires_grad_(False)
        for k in sorted({min(int(r), width) for r in ranks}):
            g = torch.Generator().manual_seed(seed * 1009 + k)
            A = torch.randn(width, k, generator=g).to(engine.adapter.device).requires_grad_()
            opt = torch.optim.Adam([A], lr=lr)
            for step in range(1, steps + 1):
                d = train_data[(step - 1) % len(train_data)]
                Q, _ = torch.linalg.qr(A)
                z = run_edits(engine.adapter, engine.readout, d["pb"].base, d["rows"],
                              d["labels"], {layer: Swap(d["pos"], d["src"], Q).edit()})
                loss = F.cross_entropy(z, d["labels"].cf[d["rows"]].to(z.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % every == 0 or step == steps:
                    Qd = torch.linalg.qr(A.detach())[0]
                    iia = _iia(engine, layer, val_data, Qd)
                    if iia > best["val_iia"] + 1e-9:
                        best = {"basis": Qd.cpu(), "rank": k, "steps": step, "val_iia": iia}
    finally:
        for p, s in zip(params, saved):
            p.requires_grad_(s)
    return best
