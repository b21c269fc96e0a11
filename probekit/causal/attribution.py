"""Where the state is carried: Captum's `LayerIntegratedGradients` of the readout margin along
the straight path from the source's latents to the base's at one layer, summed over the latent
dimension and read at each patch site. By completeness the attributions over all positions add
up to margin(base) − margin(source), so a site's share says how much of that difference it
carries at that layer.
"""

from __future__ import annotations

import torch

from probekit.adapters.base import Adapter, Batch
from probekit.causal.readouts import Readout, ReadoutForward


class MarginForward(ReadoutForward):
    """The readout's margin logit[counterfactual] − logit[base]: one number per example."""

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        cf, base = args[-2], args[-1]
        logits = super().__call__(*args[:-2])
        rows = torch.arange(len(cf), device=logits.device)
        return logits[rows, cf.to(logits.device)] - logits[rows, base.to(logits.device)]


def site_attributions(adapter: Adapter, readout: Readout, layer: str, base: Batch,
                      source: Batch, sites: torch.Tensor, which: torch.Tensor,
                      cf_class: torch.Tensor, base_class: torch.Tensor, *, n_steps: int = 16,
                      internal_batch_size: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, G] attribution at each site (0 where absent) and [B] margin(base) − margin(source)."""
    from captum.attr import LayerIntegratedGradients

    device = adapter.device
    base, source = base.to(device), source.to(device)
    f = MarginForward(adapter, [readout], tuple(base.inputs))
    extra = (readout.position(base)[:, None], which.to(device)[:, None], cf_class.to(device),
             base_class.to(device))
    lig = LayerIntegratedGradients(f, adapter.module(layer))
    attr = lig.attribute(tuple(base.inputs.values()), baselines=tuple(source.inputs.values()),
                         additional_forward_args=extra, n_steps=n_steps,
                         internal_batch_size=internal_batch_size)
    per_position = attr.sum(-1).detach()  # [B, T]
    sites = sites.to(device)
    out = torch.where(sites >= 0, per_position.gather(1, sites.clamp_min(0)), 0.0)
    with torch.no_grad():
        total = f(*base.inputs.values(), *extra) - f(*source.inputs.values(), *extra)
    return out.cpu(), total.cpu()
