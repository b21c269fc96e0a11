"""Leaderboard test data and a headless-Chromium driver, shared by the page tests and by
docs/leaderboard/make_screenshots.py.

`realistic()` is a store's worth of results: 31 models on `boxes` (the spectrum family at five
values of alpha, Hugging Face causal LMs and encoders, torch modules, one model with nothing but
its adapter; causal gains from none to strong, one `untested`) plus one superseded
`probekit.result/1` result. Every result passes `probekit.schema.validate` (a store checks
each one it reads; tests/test_leaderboard_layout.py checks a few of each kind).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from probekit.results import save
from tests.result_factory import example_v1, make, summarise

CHROMIUM = Path("/usr/bin/chromium")

# id, family, alpha, architecture, adapter, n_params
SPECTRUM = [(f"probekit/spectrum-boxes-{name}-s{seed}", family, alpha, None, "spectrum", 1204736)
            for name, family, alpha, seeds in (
                ("a0", "ntp", 0.0, 3), ("a0-h4", "multi-token", 0.0, 2),
                ("a0.25", "next-latent", 0.25, 2), ("a0.5", "next-latent", 0.5, 2),
                ("a0.5-summary", "future-summary", 0.5, 2), ("a0.75", "next-latent", 0.75, 2),
                ("a1", "jepa", 1.0, 3))
            for seed in range(seeds)]
OTHERS = [
    ("openai-community/gpt2", None, None, "gpt2", "hf", 124439808),
    ("distilbert/distilgpt2", None, None, "gpt2", "hf", 81912576),
    ("sshleifer/tiny-gpt2", None, None, "gpt2", "hf", 102714),
    ("probekit/boxes-gpt2-tiny", None, None, "gpt2", "hf", 237120),
    ("EleutherAI/pythia-14m", None, None, "gpt_neox", "hf", 14067712),
    ("EleutherAI/pythia-70m-deduped", None, None, "gpt_neox", "hf", 70426624),
    ("EleutherAI/pythia-160m", None, None, "gpt_neox", "hf", 162322944),
    ("EleutherAI/pythia-410m-deduped", None, None, "gpt_neox", "hf", 405334016),
    ("HuggingFaceTB/SmolLM2-135M", None, None, "llama", "hf", 134515008),
    ("google-bert/bert-base-uncased", None, None, "bert", "hf", 109482240),
    ("prajjwal1/bert-tiny", None, None, "bert", "hf", 4385920),
    ("lab/boxes-lstm", None, None, "BoxesLSTM", "module", 532480),
    ("lab/boxes-state-space-model", None, None, "TinySSM", "module", 301056),
    ("state-spaces/mamba-130m-hf", None, None, "mamba", "hf", 129135360),
    ("someone/mystery-model", None, None, None, "hf", 8650752),
]
MODELS = SPECTRUM + OTHERS
# width × blocks as each checkpoint's config gives them (hidden_size, num_hidden_layers); the
# torch modules and the mystery model record none
SHAPES = {"openai-community/gpt2": (768, 12), "distilbert/distilgpt2": (768, 6),
          "sshleifer/tiny-gpt2": (2, 2), "probekit/boxes-gpt2-tiny": (64, 4),
          "EleutherAI/pythia-14m": (128, 6), "EleutherAI/pythia-70m-deduped": (512, 6),
          "EleutherAI/pythia-160m": (768, 12), "EleutherAI/pythia-410m-deduped": (1024, 24),
          "HuggingFaceTB/SmolLM2-135M": (576, 30), "google-bert/bert-base-uncased": (768, 12),
          "prajjwal1/bert-tiny": (128, 2), "state-spaces/mamba-130m-hf": (768, 24),
          **{m[0]: (128, 6) for m in SPECTRUM}}
FALL_OFF = (1.0, 0.6, 0.3, 0.15)  # causal gain at 0, 1, 2, 3 layers from the headline's


def _move_headline(r: dict[str, Any], layer: str) -> None:
    """Put the causal headline (a `probe` cell at `read`, scope `layer`) at `layer`."""
    c = r["scores"]["causality"]
    if c is None or c["layer"] == layer:
        return
    key = {"layer": layer, "positions": c["positions"], "scope": c["scope"],
           "featurizer": c["featurizer"]}
    row = next(x for x in r["per_cell"] if all(x[k] == v for k, v in key.items()))
    row.update(gain=c["gain"], gain_ci95=c["ci95"])
    c.update(layer=layer, iia=row["iia"], iia_ci95=row["ci95"], pairs=row["pairs"])


def _shape_cells(r: dict[str, Any], rng: random.Random) -> None:
    """Give the per-layer causal curve a shape: at the headline's positions, `probe` gains fall
    off with the distance from the headline layer (the best), `random` gains stay near 0. The
    headline cell itself is left as it is."""
    c = r["scores"]["causality"]
    if c is None:
        return
    layers = list(dict.fromkeys(row["layer"] for row in r["per_layer"]))
    for cell in r["per_cell"]:
        if cell["positions"] != c["positions"] or not cell["reachable"] or cell["gain"] is None:
            continue
        if all(cell[k] == c[k] for k in ("layer", "positions", "scope", "featurizer")):
            continue
        distance = abs(layers.index(cell["layer"]) - layers.index(c["layer"]))
        factor = FALL_OFF[min(distance, 3)] * (0.9 if cell["scope"] == "onward" else 0.95)
        if cell["featurizer"] == "probe":
            g = round(c["gain"] * factor, 4)
        elif cell["featurizer"] == "random":
            g = round(rng.uniform(-0.01, 0.04), 4)
        else:
            continue
        half = round(0.03 + 0.04 * rng.random(), 4)
        cell.update(gain=g, gain_ci95=[round(g - half, 4), round(g + half, 4)])
    c["random_control"] = next(cell["gain"] for cell in r["per_cell"]
                               if cell["featurizer"] == "random" and all(
                                   cell[k] == c[k] for k in ("layer", "positions", "scope")))


def _vary_nulls(r: dict[str, Any], rng: random.Random) -> None:
    """Vary the random-init twin and the description length from model to model."""
    twin, bits = rng.uniform(0.5, 1.4), rng.uniform(0.5, 2.5)
    for row in r["per_layer"]:
        if row["random_init"] is not None:
            norm = (row["random_init"] - row["chance"]) / (1 - row["chance"])
            row["random_init"] = round(min(1.0, max(0.0, row["chance"]
                                                    + (1 - row["chance"]) * norm * twin)), 4)
        if row["mdl_bits"] is not None:
            row["mdl_bits"] = row["mdl_bits"] * bits
    mdl = r["scores"]["decodability"]["mdl"]
    if mdl is not None:
        mdl["random_init_compression"] = round(rng.uniform(1.4, 3.6), 3)


def superseded() -> dict[str, Any]:
    """The /1 example at an older revision of `probekit/spectrum-ntp` (so that it does not
    share a store path with `make()`'s /2 result for that model)."""
    r = example_v1()
    r["model"]["revision"] = "5e1f0c2d9a7b"
    return r


def untested(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with causal probes run but no reachable cell: verdict `untested`."""
    r = copy.deepcopy(result)
    r["scores"]["causality"] = None
    r["scores"]["causality_reason"] = "no reachable cell could be scored"
    for cell in r["per_cell"]:
        cell.update(reachable=False, reason="the patch cannot reach the readout", iia=None,
                    ci95=None, gain=None, gain_ci95=None, val_gain=None)
    return summarise(r)


def realistic(seed: int = 7) -> list[dict[str, Any]]:
    """31 /2 results with varied families and scores, then one /1 result (module docstring)."""
    rng = random.Random(seed)
    out = []
    for i, (model, family, alpha, arch, adapter, n_params) in enumerate(MODELS):
        quality = round(rng.uniform(0.3, 1.0), 3)
        if i in (5, 20, 27):
            gain = None  # causal probes not run
        elif rng.random() < 0.3:
            gain = round(rng.uniform(-0.03, 0.09), 3)  # no effect: not causal
        else:
            gain = round(min(0.95, 0.12 + rng.betavariate(1.2, 2.2)), 3)
        r = make(model=model, revision=f"{rng.getrandbits(48):012x}", family=family,
                 alpha=alpha, quality=quality, gain=gain)
        width, depth = SHAPES.get(model, (None, None))
        r["model"].update(adapter=adapter, n_params=n_params, architecture=arch, width=width,
                          depth=depth)
        _move_headline(r, ("block.0", "block.1", "block.0", "embed", "block.2")[i % 5])
        _shape_cells(r, rng)
        _vary_nulls(r, rng)
        if i == 12:
            r = untested(r)
        out.append(summarise(r))
    out.append(superseded())
    return out


def store(results: list[dict[str, Any]], root: Path) -> Path:
    for r in results:
        save(r, root / "results")
    return root


# --- headless Chromium ------------------------------------------------------------------------
# Driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in
# NUL on fds 3 and 4), because a window narrower than 500 px cannot be had from the command line:
# the viewport is emulated (`Emulation.setDeviceMetricsOverride`), as a phone's would be.

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]
ERRORS = ("window.__errors = []; addEventListener('error', "
          "(e) => window.__errors.push(String(e.message)));")
TIMEOUT_S = 60.0


class Browser:
    """One headless Chromium; `open` loads a page at a viewport size, `evaluate` runs script in
    it, `screenshot` captures the whole page. Use as a context manager."""

    def __init__(self, tmp: Path):
        chrome_in, self._to_chrome = os.pipe()
        self._from_chrome, chrome_out = os.pipe()
        self.log = tmp / "chromium.log"
        self._log = self.log.open("ab")

        def fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(chrome_in), os.dup(chrome_out)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'chromium'}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log, preexec_fn=fds, close_fds=False)
        os.close(chrome_in)
        os.close(chrome_out)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError, TimeoutError):
            pass  # it closes the pipe as it goes
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.log.read_text()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_chrome, data):]
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def open(self, page: Path, width: int, height: int, fragment: str = "",
             mobile: bool = False) -> "Browser":
        """Load `page` (a file) in a fresh tab whose viewport is `width` × `height` CSS pixels."""
        if self.session:
            self.send("Target.closeTarget", {"targetId": self._target}, session=False)
        self._target = self.send("Target.createTarget", {"url": "about:blank"},
                                 session=False)["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": self._target, "flatten": True},
                                 session=False)["sessionId"]
        self.events.clear()
        self.send("Page.enable")
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": ERRORS})
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        self.send("Page.navigate", {"url": page.as_uri() + fragment})
        self.wait_for("Page.loadEventFired")
        return self

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (JSON-able; a thrown error raises here)."""
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    def screenshot(self, png: Path, selector: str | None = None, margin: int = 8) -> Path:
        """The whole page (beyond the viewport), or the element `selector` names with `margin`
        pixels around it, as a PNG."""
        if selector is None:
            x, y, width, height = self.evaluate(
                "[0, 0, document.documentElement.clientWidth, "
                "document.documentElement.scrollHeight]")
        else:
            x, y, width, height = self.evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, "
                "r.height]; })()")
            x, y, width, height = x - margin, y - margin, width + 2 * margin, height + 2 * margin
        data = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1}})["data"]
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        return png
