"""`probekit results list [DIR]` and `probekit results show PATH`: read results back as tables."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from probekit.cli.tasks import add_include, include_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="list the results in a folder or store, or show one",
                       description="Read result JSON files back: `list` makes one row per "
                                   "result, `show` prints one result in full.")
    rsub = p.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    ls = rsub.add_parser("list", help="one row per result in a results folder or store",
                         description="One row per result file found under DIR (searched "
                                     "recursively: an `eval --out` folder and a store both "
                                     "work): model, task, the headline scores and the verdict. "
                                     "Results of a limited run (eval --limit) are marked.")
    ls.add_argument("dir", nargs="?", default="results", type=Path, metavar="DIR",
                    help="a results folder (probekit eval --out) or a store (probekit submit "
                         "--store) (default: results)")
    ls.add_argument("--store", action="store_true",
                    help="list the default store instead ($PROBEKIT_STORE, else store/ in the "
                         "probekit cache)")
    add_include(ls)
    ls.set_defaults(func=cmd_list)
    show = rsub.add_parser("show", help="one result: its summary, per-layer and per-cell tables",
                           description="One result in full: model, task and run; the headline "
                                       "scores; decodability per layer and depth (normalised: "
                                       "chance 0, perfect 1, mean over targets) and per target "
                                       "at the chosen layer; the causal cells.")
    show.add_argument("path", type=Path, metavar="PATH",
                      help="a result JSON file (e.g. results/probekit__boxes-gpt2-tiny/<rev>/"
                           "boxes.json)")
    add_include(show)
    show.set_defaults(func=cmd_show)


# --- helpers ------------------------------------------------------------------------------

def num(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, (int, float)) else str(x)


def interval(x: Any, ci: Any) -> str:
    if x is None:
        return "—"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return f"{x:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{x:.3f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart, a rule under the header."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def causal_cell(c: dict[str, Any]) -> str:
    """The causal headline: its gain [95% CI] (result/2), or IIA for a /1 result."""
    if not c:
        return "—"
    if c.get("gain") is None and c.get("iia") is not None:
        return "IIA " + interval(c["iia"], c.get("ci95"))
    return interval(c.get("gain"), c.get("ci95"))


def limited(result: dict[str, Any], include: Iterable[str | os.PathLike] = ()) -> int | None:
    """The `--limit` of a limited run's result (None for a full run)."""
    from probekit.tasks import limit_of

    t = result.get("task") or {}
    return limit_of(t.get("name"), t.get("fingerprint"), include)


def data_note(result: dict[str, Any], include: Iterable[str | os.PathLike] = ()) -> str:
    """What is unusual about a result's data: a limited run, another spec of the task, a task
    not registered here, a superseded schema; '' when nothing is."""
    from probekit.errors import ProbekitError
    from probekit.record import SCHEMA
    from probekit.tasks import load_task

    notes = []
    if result.get("schema") != SCHEMA:
        notes.append(f"superseded schema {result.get('schema')}")
    t = result.get("task") or {}
    n = limited(result, include)
    if n is not None:
        return "; ".join(notes + [f"limited: {n} episodes per split (eval --limit)"])
    try:
        task = load_task(t.get("name"), include)
    except ProbekitError:
        notes.append("task not registered here")
    else:
        if t.get("version") != task.version:
            notes.append(f"task v{t.get('version')} (v{task.version} here)")
        elif t.get("fingerprint") != task.fingerprint:
            notes.append("other data than the task here")
    return "; ".join(notes)


# --- list ---------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from probekit import store
    from probekit.errors import ProbekitError, UserError

    folder = store.default_root() if args.store else args.dir
    if not folder.is_dir():
        what = "store" if args.store else "results folder"
        hint = ("nothing was filed there yet (probekit submit)" if args.store else
                "pass the folder given to `probekit eval --out`, or --store")
        raise UserError(f"{what} {str(folder)!r} does not exist; {hint}")
    files = sorted(f for f in folder.rglob("*.json")
                   if not any(p.startswith(".") for p in f.relative_to(folder).parts))
    include = include_paths(args)
    rows = []
    for f in files:
        try:
            r = store.load(f)
        except ProbekitError as e:
            print(f"probekit: warning: skipped {f}: {e}", file=sys.stderr)
            continue
        s = r.get("scores") or {}
        d = s.get("decodability") or {}
        c = s.get("causality") or {}
        rows.append([r["model"]["id"], r["model"].get("revision") or "main", r["task"]["name"],
                     d.get("layer") or "—", interval(d.get("value"), d.get("ci95")),
                     num(d.get("selectivity")), num(d.get("random_init")),
                     causal_cell(c),
                     num(s.get("world_model_score")), s.get("verdict") or "—",
                     (r.get("env") or {}).get("date", "—"), str(f.relative_to(folder)),
                     data_note(r, include)])
    if not rows:
        print(f"no results in {folder}")
        return 0
    print(f"{len(rows)} result(s) in {folder} (normalised scores: chance 0, perfect 1)")
    headers = ["model", "revision", "task", "layer", "decodability [95% CI]", "selectivity",
               "random init", "causal gain [95% CI]", "world model", "verdict", "date", "file",
               "note"]
    if not any(r[-1] for r in rows):
        headers, rows = headers[:-1], [r[:-1] for r in rows]
    print(table(headers, rows))
    return 0


# --- show ---------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from probekit import store
    from probekit.errors import UserError

    if not args.path.is_file():
        what = "is a folder" if args.path.is_dir() else "does not exist"
        raise UserError(f"result {str(args.path)!r} {what}; pass one result JSON file (see "
                        "`probekit results list`)")
    r = store.load(args.path)
    print(show_text(r, include_paths(args)))
    return 0


def show_text(r: dict[str, Any], include: Iterable[str | os.PathLike] = ()) -> str:
    """One result as text: identity, headline scores, per-layer, per-target and cell tables."""
    m, t, s = r["model"], r["task"], r.get("scores") or {}
    d, c = s.get("decodability") or {}, s.get("causality") or {}
    spectrum = m.get("spectrum") or {}
    family = spectrum.get("family") or m.get("architecture") or "—"
    out = [f"{m['id']} @ {m.get('revision') or 'main'} on {t['name']} v{t['version']}",
           f"  model: {m.get('adapter')} adapter, {family}"
           + (f" a={spectrum['alpha']:g}" if spectrum.get("alpha") is not None else "")
           + (f", {m['depth']} blocks × {m['width']}" if m.get("width") and m.get("depth")
              else "")  # as `probekit models list` words it
           + f", {m.get('n_params', 0):,} parameters, {m.get('dtype')}, sha256 "
           f"{str(m.get('sha256'))[:12]}",
           f"  task: fingerprint {t['fingerprint']}, episodes train {t['n_train']:,} / val "
           f"{t['n_val']:,} / test {t['n_test']:,}"
           + (f"; skipped targets {', '.join(t['skipped_targets'])}"
              if t.get("skipped_targets") else "")]
    note = data_note(r, include)
    if note:
        out.append(f"  note: {note}")
    env, timings = r.get("env") or {}, r.get("timings") or {}
    out.append(f"  run: {r.get('run_id')}, {env.get('date', '—')} on {env.get('device', '—')}, "
               f"probekit {env.get('probekit', '—')}; "
               + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items()
                           if isinstance(v, (int, float))))
    out += ["", "scores (normalised: chance 0, perfect 1)"]
    mdl = d.get("mdl") or {}
    headline = [
        ("decodability (late steps)", interval(d.get("value"), d.get("ci95"))
         + f" at {d.get('layer')}"),
        ("  pooled over steps", num(d.get("pooled"))),
        ("  control task / selectivity", f"{num(d.get('control'))} / "
                                          f"{num(d.get('selectivity'))}"),
        ("  random-init twin", num(d.get("random_init"))),
        ("  MDL compression (twin)", f"{num(mdl.get('compression'), 2)} "
                                     f"({num(mdl.get('random_init_compression'), 2)})"
         if mdl else "—"),
    ]
    if c:
        site = " ".join(str(c.get(k)) for k in ("layer", "positions", "scope", "featurizer")
                        if c.get(k) is not None)
        headline += [
            ("causal gain", interval(c.get("gain"), c.get("ci95")) + f" at {site}"),
            ("  IIA / baseline / placebo", f"{interval(c.get('iia'), c.get('iia_ci95'))} / "
                                           f"{num(c.get('baseline'))} / {num(c.get('placebo'))}"),
            ("  random-subspace control", num(c.get("random_control"))),
            ("  pairs scored (readout)", f"{c.get('pairs')} ({c.get('readout', '—')})"),
        ]
    else:
        headline.append(("causal gain", f"— ({s.get('causality_reason') or 'not measured'})"))
    headline += [("world-model score", num(s.get("world_model_score"))),
                 ("verdict", s.get("verdict") or "—")]
    width = max(len(k) for k, _ in headline)
    out += [f"  {k.ljust(width)}  {v}" for k, v in headline]
    out += ["", *layer_section(r)]
    cells = cell_section(r)
    if cells:
        out += ["", *cells]
    return "\n".join(out)


def layer_section(r: dict[str, Any]) -> list[str]:
    """Decodability per layer × depth (test, normalised, mean over targets), and per target at
    the chosen layer (raw metrics)."""
    from probekit.record import layer_mean

    rows = r.get("per_layer") or []
    if not rows:
        return ["no per-layer rows"]
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    depths = list(dict.fromkeys(row.get("depth", "all") for row in rows))
    chosen = (r.get("scores") or {}).get("decodability", {}).get("layer")
    late = "q4" if "q4" in depths else depths[-1]
    extra = [(name, col) for name, col in (("control", "control"),
                                            ("random init", "random_init"),
                                            ("test_long", "test_long"))
             if any(row.get(col) is not None for row in rows)]
    headers = ["layer", *[f"test {x}" for x in depths], f"val {late}",
               *[f"{name} {late}" for name, _ in extra]]
    body = []
    for layer in layers:
        mark = " *" if layer == chosen else ""
        body.append([layer + mark,
                     *[num(layer_mean(rows, layer, "test", x)) for x in depths],
                     num(layer_mean(rows, layer, "val", late)),
                     *[num(layer_mean(rows, layer, col, late)) for _, col in extra]])
    out = ["decodability by layer and depth (test; * the layer chosen on val)",
           table(headers, body)]
    at = [row for row in rows if row["layer"] == chosen and row.get("depth", late) == late]
    if at:
        cols = [k for k in ("train", "val", "test", "control", "random_init", "test_long",
                            "mdl_bits") if any(row.get(k) is not None for row in at)]
        out += ["", f"targets at {chosen}, depth {late} (raw metric; chance beside it)",
                table(["target", "metric", "chance", *cols],
                      [[row["target"], row.get("metric", "—"), num(row.get("chance")),
                        *[num(row.get(k), 1 if k == "mdl_bits" else 3) for k in cols]]
                       for row in at])]
    return out


def cell_section(r: dict[str, Any]) -> list[str]:
    """The causal cells: one row per (layer, positions, scope), gain [95% CI] per featurizer,
    and the untestable layers with the reason."""
    cells = r.get("per_cell") or []
    if not cells:
        return []
    testable = [c for c in cells if c.get("reachable", True) and c.get("featurizer")]
    feats = list(dict.fromkeys(c["featurizer"] for c in testable))
    grid: dict[tuple, dict[str, Any]] = {}
    for c in testable:
        key = (c["layer"], c.get("positions"), c.get("scope", "layer"))
        grid.setdefault(key, {"pairs": c.get("pairs"), "baseline": c.get("baseline")})
        grid[key][c["featurizer"]] = c
    body = [[layer, pos, scope, str(v["pairs"]), num(v["baseline"]),
             *[interval(v[f].get("gain"), v[f].get("gain_ci95")) if f in v else "—"
               for f in feats]]
            for (layer, pos, scope), v in grid.items()]
    out = ["causal cells (test; gain = share of the headroom above the unrelated-patch "
           "baseline)", table(["layer", "positions", "scope", "pairs", "baseline", *feats], body)]
    untestable = {c["layer"]: c.get("reason") for c in cells if not c.get("reachable", True)}
    for layer, reason in untestable.items():
        out.append(f"not testable at {layer}: {reason}")
    return out
