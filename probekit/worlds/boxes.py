"""Boxes: objects are put into, moved between and removed from boxes (Kim & Schuster 2023)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from probekit.errors import SpecError
from probekit.worlds.base import Counterfactual, Episode, Knob, Target, World, build_text

OBJECTS = ("apple", "key", "coin", "book", "shoe", "cup", "ball", "pen", "ring", "hat", "lamp",
           "fork", "sock", "card", "bell", "doll", "drum", "kite", "leaf", "map", "nut", "plate",
           "rope", "toy")
WORDS = ("put", "move", "remove", "the", "in", "from", "to", "box", ".", "where", "is", "?",
         "nowhere")
PUT, MOVE, REMOVE = 0, 1, 2
# Sentence templates per action ({o} object, {s} source box, {d} destination box). The first
# is the `sentences` style; `paraphrased` draws one per step. Every template of an action puts
# the box numbers at the same word positions relative to each other (source before
# destination), so a counterfactual destination changes one word.
TEMPLATES = {
    PUT: ("put the {o} in box {d}", "place the {o} into box {d}", "the {o} goes into box {d}"),
    MOVE: ("move the {o} from box {s} to box {d}",
           "take the {o} out of box {s} and put it in box {d}",
           "the {o} moves from box {s} to box {d}"),
    REMOVE: ("remove the {o} from box {s}", "take the {o} out of box {s}",
             "the {o} leaves box {s}"),
}
PARAPHRASE_WORDS = ("place", "into", "goes", "take", "out", "of", "and", "it", "moves", "leaves")
OUT = "out"  # the destination word of an operation token that takes an object out of every box


def op_token(name: str, dst: int | None) -> str:
    """One `ops`-style step: `key>3` (the key goes to box 3) or `key>out` (out of every box)."""
    return f"{name}>{OUT if dst is None else dst}"


@functools.lru_cache(maxsize=None)
def _vocab() -> dict[str, int]:
    words = (list(WORDS) + [str(i) for i in range(10)] + list(OBJECTS) + list(PARAPHRASE_WORDS)
             + [op_token(o, d) for o in OBJECTS for d in [*range(10), None]])
    return {w: i for i, w in enumerate(words)}


class Boxes(World):
    """Entity tracking: the state is where each object is (a box, or out of every box)."""

    name = "boxes"
    version = "2"
    description = ("Objects are put into, moved between and removed from numbered boxes by a "
                   "sequence of operations; the closing question asks where one object is.")
    knobs = (
        Knob("n_boxes", int, 4, "number of boxes", min=2, max=10),
        Knob("n_objects", int, 4, "number of objects in play", min=1, max=len(OBJECTS)),
        Knob("n_ops", int, 16, "operations per episode (steps)", min=1, max=256),
        Knob("object_offset", int, 0, "first object of the pool in play (unseen-object splits)",
             min=0, max=len(OBJECTS) - 1),
        Knob("p_remove", float, 0.25, "chance that an object in a box is removed, not moved",
             min=0.0, max=1.0),
        Knob("obs_noise", float, 0.0, "std of Gaussian noise added to observations", min=0.0,
             max=10.0),
        Knob("style", str, "ops", "text of a step: `ops` (one token, `key>3`), `sentences` "
             "(`put the key in box 3 .`) or `paraphrased` (a sentence template drawn per step)",
             choices=("ops", "sentences", "paraphrased")),
    )
    counterfactual_knobs = (
        Knob("variable", str, "destination", "what the intervention changes",
             choices=("destination",)),
        Knob("step", str, "last_touch", "which step: the last operation on the queried object",
             choices=("last_touch",)),
        Knob("readout", str, "query", "what must follow: the answer to the closing question",
             choices=("query",)),
    )

    @classmethod
    def check_knobs(cls, params: dict[str, Any], where: str) -> None:
        if params["object_offset"] + params["n_objects"] > len(OBJECTS):
            raise SpecError(f"{where}: object_offset + n_objects must be at most {len(OBJECTS)} "
                            f"(got {params['object_offset']} + {params['n_objects']})")

    @property
    def objects(self) -> tuple[str, ...]:
        o = self.params["object_offset"]
        return OBJECTS[o:o + self.params["n_objects"]]

    def vocabulary(self) -> list[str]:
        """Every style's words, the same for every knob setting (one tokenizer reads all)."""
        return list(_vocab())

    def targets(self) -> list[Target]:
        """Targets name object slots (`location.obj0` is the first object in play), so splits
        with other objects (`object_offset`) share their label columns."""
        b, n = self.params["n_boxes"], self.params["n_objects"]
        locs = [Target(f"location.obj{i}", "class", b + 1) for i in range(n)]
        counts = [Target(f"count.box{j}", "class", n + 1) for j in range(b)]
        return locs + counts

    # --- simulation -------------------------------------------------------------------------

    def _draw_ops(self, rng: np.random.Generator) -> list[tuple[int, int, int, int, int]]:
        """Operations as (action, object, from, to, template); `out` (= n_boxes) marks no
        box; the template index is 0 unless the style is `paraphrased`."""
        b, n = self.params["n_boxes"], self.params["n_objects"]
        out = b
        loc = [out] * n
        ops = []
        for _ in range(self.params["n_ops"]):
            o = int(rng.integers(n))
            src = loc[o]
            if src == out:
                action, dst = PUT, int(rng.integers(b))
            elif rng.random() < self.params["p_remove"]:
                action, dst = REMOVE, out
            else:
                action, dst = MOVE, int((src + 1 + rng.integers(b - 1)) % b)
            template = int(rng.integers(len(TEMPLATES[action]))) \
                if self.params["style"] == "paraphrased" else 0
            loc[o] = dst
            ops.append((action, o, src, dst, template))
        return ops

    def _words(self, op: tuple[int, int, int, int, int]) -> list[str]:
        action, o, src, dst, template = op
        name = self.objects[o]
        if self.params["style"] == "ops":
            return [op_token(name, None if action == REMOVE else dst), "."]
        text = TEMPLATES[action][template].format(o=name, s=src, d=dst)
        return text.split() + ["."]

    def _render(self, ops: list[tuple[int, int, int, int, int]], query_obj: int,
                rng: np.random.Generator) -> Episode:
        b, n = self.params["n_boxes"], self.params["n_objects"]
        out = b
        loc = np.full(n, out, dtype=np.int64)
        steps, surface, states, obs = [], [], [], []
        d = 3 + n + 2 * (b + 1)
        for op in ops:
            action, o, src, dst, _ = op
            words = self._words(op)
            loc[o] = dst
            steps.append(words)
            surface.append(" ".join(words))
            states.append(loc.copy())
            x = np.zeros(d, dtype=np.float32)
            x[action] = 1
            x[3 + o] = 1
            x[3 + n + src] = 1
            x[3 + n + b + 1 + dst] = 1
            obs.append(x)
        state = np.stack(states)
        obs_arr = np.stack(obs)
        if self.params["obs_noise"] > 0:
            obs_arr = obs_arr + rng.normal(0, self.params["obs_noise"], obs_arr.shape)
        final = int(state[-1, query_obj])
        answer = "nowhere" if final == out else str(final)
        text, spans, tokens, token_steps, qspan, answer = build_text(
            steps, _vocab(),
            query=["where", "is", "the", self.objects[query_obj], "?"], answer=answer)
        labels = {f"location.obj{i}": state[:, i] for i in range(n)}
        for j in range(b):
            labels[f"count.box{j}"] = (state == j).sum(axis=1)
        return Episode(text, spans, tokens, token_steps, obs_arr.astype(np.float32), state,
                       surface, labels, qspan, answer)

    def episode(self, rng: np.random.Generator) -> Episode:
        ops = self._draw_ops(rng)
        final = {}
        for _, o, _, dst, _ in ops:
            final[o] = dst
        in_box = sorted(o for o, d in final.items() if d != self.params["n_boxes"])
        pool = in_box or sorted(final)
        query_obj = int(pool[rng.integers(len(pool))])
        ep = self._render(ops, query_obj, rng)
        ep._ops = ops  # kept for counterfactuals made right after; not part of the row
        ep._query_obj = query_obj
        return ep

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Change where the last operation on the queried object puts it; nothing after that
        step mentions the object, so base and source texts differ in that one step's box (one
        word, or the one `ops` token) and in the answer."""
        b = self.params["n_boxes"]
        ops, q = base._ops, base._query_obj
        t = max((i for i, op in enumerate(ops) if op[1] == q), default=None)
        if t is None:
            return None
        action, o, src, dst, template = ops[t]
        if action == REMOVE:
            return None
        options = [j for j in range(b) if j != dst and j != src]
        if not options:
            return None
        new_dst = int(options[rng.integers(len(options))])
        new_ops = list(ops)
        new_ops[t] = (action, o, src, new_dst, template)
        source = self._render(new_ops, q, rng)
        # Same observation noise as the base: only the destination one-hot at step t moves.
        source.obs = base.obs.copy()
        d0 = 3 + self.params["n_objects"] + b + 1
        source.obs[t, d0 + dst] -= 1
        source.obs[t, d0 + new_dst] += 1
        variable = f"location.obj{q}"
        return Counterfactual(source=source, step=t, variable=variable, readout_target=variable,
                              base_label=dst, counterfactual_label=new_dst)
