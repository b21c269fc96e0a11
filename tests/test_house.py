"""The house is one-way: imports, read from the source with `ast`, follow the layering below and
never run in a circle; loading a model imports no training or publishing code; every
third-party package probekit imports is declared.

Imports are read everywhere in a module: at module level, inside functions (lazy imports), and
under `if TYPE_CHECKING:` (for the layering rules only: they never run). Importing `a.b.c` runs
`a/__init__` and `a/b/__init__` first, so an import of a module also counts as an import of the
packages above it. A name a package serves lazily through its `__getattr__` (PEP 562) counts as
an import of the module that defines it by whoever imports the name, not by the package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "probekit"

# (importer, imported): no module at or under the first may import one at or under the second.
PROBES = ("probekit.probes", "probekit.decodability", "probekit.causal", "probekit.prediction")
PUBLISHING = ("probekit.hub", "probekit.store", "probekit.leaderboard")
MODELS = ("probekit.adapters", "probekit.spectrum", "probekit.extraction", "probekit.latents")
FORBIDDEN = sorted(
    # worlds know nothing of models, nor of anything built on them
    [("probekit.worlds", m) for m in (*MODELS, *PROBES, *PUBLISHING, "probekit.evaluation")]
    # adapters know nothing of training, probing or publishing
    + [("probekit.adapters", m) for m in ("probekit.spectrum.train", "probekit.extraction",
                                          *PROBES, "probekit.evaluation", *PUBLISHING)]
    # the spectrum model and its checkpoints know nothing of the trainer or of adapters
    + [(f"probekit.spectrum.{m}", t) for m in ("model", "objective", "checkpoint", "collapse")
       for t in ("probekit.spectrum.train", "probekit.adapters")]
    # latents are data: extraction writes them, probes read them
    + [("probekit.latents", m) for m in ("probekit.adapters", "probekit.extraction", *PROBES)]
    # probes know nothing of publishing, training or the evaluation that runs them
    + [(p, m) for p in PROBES for m in (*PUBLISHING, "probekit.spectrum.train",
                                         "probekit.evaluation")]
    # the Hub room knows nothing of models or probes
    + [("probekit.hub", m) for m in (*MODELS, *PROBES)]
    # nothing but the CLI itself (and `python -m probekit`) imports the CLI
    + [(p, "probekit.cli") for p in ("probekit.adapters", "probekit.worlds", "probekit.tasks",
                                     *PROBES, *MODELS, *PUBLISHING, "probekit.evaluation",
                                     "probekit.spectrum", "probekit.data")]
)

# What `probekit.adapters.load_model` must never import (issue 14).
NOT_LOADED_BY_LOAD_MODEL = ("probekit.spectrum.train", "probekit.hub", "probekit.store",
                            "probekit.leaderboard", "probekit.decodability", "probekit.causal",
                            "probekit.extraction", "probekit.evaluation")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    kind: str  # "top" (module level), "lazy" (in a function) or "typing" (TYPE_CHECKING only)
    line: int

    def __str__(self) -> str:
        path = self.importer.replace(".", "/")
        return f"{self.importer} -> {self.imported} ({self.kind} import, {path} line {self.line})"


def modules(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) of every module under `package`."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _statements(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str, str | None]]:
    """Every import statement of a module: (node, kind, name of the top-level function it is
    in, if any)."""
    found: list[tuple[ast.Import | ast.ImportFrom, str, str | None]] = []

    def walk(body: list[ast.stmt], kind: str) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append((node, kind, None))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        inside = node.name if not isinstance(node, ast.ClassDef) else None
                        found.append((sub, "typing" if kind == "typing" else "lazy", inside))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                walk(node.body, "typing")
                walk(node.orelse, kind)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    sub = getattr(node, field, None)
                    if isinstance(sub, list):
                        walk(sub, kind)

    walk(tree.body, "top")
    return found


def _base(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(package: Path = PACKAGE) -> list[Import]:
    """Every import of a probekit module by a probekit module, resolved to the module it runs."""
    mods = modules(package)
    trees = {name: ast.parse(path.read_text(), str(path)) for name, (path, _) in mods.items()}
    # names served by a package's __getattr__: declared under TYPE_CHECKING or imported there
    lazy_names: dict[str, dict[str, str]] = {}
    for name, (_, is_package) in mods.items():
        if not is_package or not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                                     for n in trees[name].body):
            continue
        for node, kind, inside in _statements(trees[name]):
            if isinstance(node, ast.ImportFrom) and (kind == "typing" or inside == "__getattr__"):
                for alias in node.names:
                    lazy_names.setdefault(name, {})[alias.asname or alias.name] = \
                        _base(name, is_package, node)
    out = []
    for name, (_, is_package) in mods.items():
        for node, kind, inside in _statements(trees[name]):
            if is_package and inside == "__getattr__":
                continue  # on behalf of whoever asks for the name (see the module docstring)
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(name, is_package, node)
                targets = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in mods else
                                   lazy_names.get(base, {}).get(alias.name, base))
            out += [Import(name, t, kind, node.lineno) for t in targets
                    if t.split(".")[0] == "probekit"]
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(found: list[Import], forbidden: list[tuple[str, str]] = FORBIDDEN) -> list[str]:
    return [f"{imp}: {src} may not import {dst}" for imp in found for src, dst in forbidden
            if _within(imp.importer, src) and _within(imp.imported, dst)]


def graph(found: list[Import], kinds: tuple[str, ...]) -> dict[str, set[str]]:
    """importer -> the modules importing it runs: the imported module and the packages above it
    (except those above the importer, which are already running)."""
    g: dict[str, set[str]] = {}
    for imp in found:
        if imp.kind not in kinds:
            continue
        above = {imp.importer.rsplit(".", i)[0] for i in range(imp.importer.count(".") + 1)}
        parts = imp.imported.split(".")
        runs = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - above
        g.setdefault(imp.importer, set()).update(runs)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_rules_name_real_modules():
    names = set(modules())
    for src, dst in FORBIDDEN:
        for prefix in (src, dst):
            assert any(_within(n, prefix) for n in names), f"no module {prefix} (rule renamed?)"


def test_imports_go_one_way():
    found = imports()
    assert len(found) > 100  # the walk reads the package
    assert violations(found) == []


@pytest.mark.parametrize("kinds", [("top",), ("top", "lazy")], ids=["module-level", "with-lazy"])
def test_no_import_cycle(kinds):
    assert cycles(graph(imports(), kinds)) == []


def reachable(g: dict[str, set[str]], start: list[str]) -> dict[str, str]:
    """Every module importing `start` can run (lazily too): module -> the one it came from."""
    came = {s: "" for s in start}
    todo = list(start)
    while todo:
        v = todo.pop()
        for w in sorted(g.get(v, ())):
            if w not in came:
                came[w] = v
                todo.append(w)
    return came


def _path(came: dict[str, str], v: str) -> str:
    out = [v]
    while came[out[-1]]:
        out.append(came[out[-1]])
    return " <- ".join(out)


def test_no_adapter_import_reaches_training_or_publishing():
    """Statically, lazy imports included: whatever an adapter runs, it never runs these."""
    found = imports()
    start = [m for m in modules() if _within(m, "probekit.adapters")]
    came = reachable(graph(found, ("top", "lazy")), start)
    assert [_path(came, m) for m in came if m.startswith(NOT_LOADED_BY_LOAD_MODEL)] == []


def test_the_checks_catch_a_violation_and_a_cycle(tmp_path):
    """A deliberate violation and a lazy cycle in a copy of the package are found."""
    import shutil

    copy = tmp_path / "probekit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    hf = copy / "adapters" / "hf.py"
    hf.write_text(hf.read_text() + "\n\ndef _bad():\n    from probekit.spectrum import "
                  "SpectrumTrainer\n    from probekit import store\n")
    tasks = copy / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n\ndef _loop():\n    from probekit import "
                     "evaluation\n")
    found = imports(copy)
    bad = violations(found)
    assert any("probekit.adapters.hf -> probekit.spectrum.train (lazy" in v for v in bad), bad
    assert any("probekit.adapters.hf -> probekit.store (lazy" in v for v in bad), bad
    assert cycles(graph(found, ("top",))) == []
    assert any({"probekit.tasks", "probekit.evaluation"} <= set(c)
               for c in cycles(graph(found, ("top", "lazy"))))
    came = reachable(graph(found, ("top", "lazy")), ["probekit.adapters"])
    assert "probekit.spectrum.train" in came and "probekit.store" in came


def test_loading_a_model_imports_no_training_or_publishing_code():
    code = (
        "import sys\n"
        "import probekit.adapters\n"
        "from probekit.adapters import load_model\n"
        "from probekit.spectrum import checkpoint\n"
        "load_model(checkpoint.shipped()[0], device='cpu')\n"
        f"print(sorted(m for m in sys.modules if m.startswith({NOT_LOADED_BY_LOAD_MODEL!r})))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_third_party_import_is_declared():
    """Each package imported anywhere under probekit/ belongs to a declared dependency."""
    import importlib.metadata as md
    import re

    declared = {_normalise(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    owners = md.packages_distributions()
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for top in (n.split(".")[0] for n in names):
                if top in sys.stdlib_module_names or top == "probekit":
                    continue
                dists = {_normalise(d) for d in owners.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == {}, "imported but not in pyproject's dependencies"
