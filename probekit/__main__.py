"""`python -m probekit` (also what `torchrun -m probekit` runs)."""

from probekit.cli import entry

entry()
