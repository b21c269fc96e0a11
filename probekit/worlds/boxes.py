"""Boxes: objects are put into, moved between and removed from boxes (Kim & Schuster 2023)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from probekit.errors import SpecError
from probekit.worlds.base import (
    Counterfactual,
    Episode,
    Knob,
    Target,
    Violation,
    World,
    build_text,
    undefined_from,
)

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


@functools.cache
def _vocab() -> dict[str, int]:
    words = (list(WORDS) + [str(i) for i in range(10)] + list(OBJECTS) + list(PARAPHRASE_WORDS)
             + [op_token(o, d) for o in OBJECTS for d in [*range(10), None]])
    return {w: i for i, w in enumerate(words)}


class Boxes(World):
    """Entity tracking: the state is where each object is (a box, or out of every box)."""

    name = "boxes"
    version = "3"
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
    violation_knobs = (
        Knob("kinds", tuple, ("same_box", "absent_leave"), "which rules the impossible edit "
             "breaks: `same_box` (an object lands in the box it is already in), `absent_leave` "
             "(an object leaves a box it is not in)", choices=("same_box", "absent_leave")),
        Knob("step", str, "random", "which step: a uniformly drawn one among those that admit "
             "the edit, or the last", choices=("random", "last")),
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

    def _obs(self, op: tuple[int, int, int, int, int]) -> np.ndarray:
        """One step's observation without noise: one-hot action, object, source, destination."""
        b, n = self.params["n_boxes"], self.params["n_objects"]
        action, o, src, dst, _ = op
        x = np.zeros(3 + n + 2 * (b + 1), dtype=np.float32)
        x[action] = 1
        x[3 + o] = 1
        x[3 + n + src] = 1
        x[3 + n + b + 1 + dst] = 1
        return x

    def rule_break(self, ops: list[tuple[int, int, int, int, int]]) -> int | None:
        """The first operation that breaks the world's rules, or None: a `put` takes an object
        that is in no box, a `move` takes it from the box it is in to another box, a `remove`
        takes it out of the box it is in."""
        out = self.params["n_boxes"]
        loc = [out] * self.params["n_objects"]
        for i, (action, o, src, dst, _) in enumerate(ops):
            ok = {PUT: loc[o] == src == out and dst != out,
                  MOVE: loc[o] == src != out and dst not in (src, out),
                  REMOVE: loc[o] == src != out and dst == out}[action]
            if not ok:
                return i
            loc[o] = dst
        return None

    def _render(self, ops: list[tuple[int, int, int, int, int]], query_obj: int,
                rng: np.random.Generator) -> Episode:
        b, n = self.params["n_boxes"], self.params["n_objects"]
        out = b
        loc = np.full(n, out, dtype=np.int64)
        steps, surface, states, obs = [], [], [], []
        for op in ops:
            o, dst = op[1], op[3]
            words = self._words(op)
            loc[o] = dst
            steps.append(words)
            surface.append(" ".join(words))
            states.append(loc.copy())
            obs.append(self._obs(op))
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

    def _edit(self, base: Episode, edits: dict[int, tuple[int, int, int, int, int]],
              rng: np.random.Generator) -> Episode:
        """`base` with the operations at some steps replaced; observations keep the base's
        noise (only the replaced steps' one-hot entries move)."""
        ops = list(base._ops)
        obs = base.obs.copy()
        for t, op in edits.items():
            obs[t] += self._obs(op) - self._obs(ops[t])
            ops[t] = op
        ep = self._render(ops, base._query_obj, rng)
        ep.obs = obs
        ep._ops = ops
        return ep

    @staticmethod
    def _last_touches(ops: list[tuple[int, int, int, int, int]]) -> dict[int, int]:
        """Object -> the step of the last operation on it."""
        return {op[1]: t for t, op in enumerate(ops)}

    def _redirect(self, base: Episode, t: int, rng: np.random.Generator
                  ) -> tuple[Episode, int] | None:
        """`base` with the destination of the (put or move) operation at step t changed to
        another box it may go to, and that box; None for a remove or when no box is left."""
        action, o, src, dst, template = base._ops[t]
        if action == REMOVE:
            return None
        options = [j for j in range(self.params["n_boxes"]) if j != dst and j != src]
        if not options:
            return None
        new_dst = int(options[rng.integers(len(options))])
        return self._edit(base, {t: (action, o, src, new_dst, template)}, rng), new_dst

    def counterfactual(self, base: Episode, rng: np.random.Generator,
                       settings: dict[str, Any]) -> Counterfactual | None:
        """Change where the last operation on the queried object puts it; nothing after that
        step mentions the object, so base and source texts differ in that one step's box (one
        word, or the one `ops` token) and in the answer."""
        ops, q = base._ops, base._query_obj
        t = self._last_touches(ops).get(q)
        if t is None:
            return None
        made = self._redirect(base, t, rng)
        if made is None:
            return None
        source, new_dst = made
        variable = f"location.obj{q}"
        return Counterfactual(source=source, step=t, variable=variable, readout_target=variable,
                              base_label=ops[t][3], counterfactual_label=new_dst)

    def placebo(self, base: Episode, pair: Counterfactual, rng: np.random.Generator,
                settings: dict[str, Any]) -> Counterfactual | None:
        """Change where the last operation on another object (drawn among those whose last
        operation is a put or a move) puts it: nothing later mentions that object, so the
        answer about the queried one is unchanged while that object's location and the box
        counts change from that step on."""
        q = base._query_obj
        last = self._last_touches(base._ops)
        steps = sorted(t for o, t in last.items() if o != q)
        for i in rng.permutation(len(steps)).tolist():
            t = steps[i]
            made = self._redirect(base, t, rng)
            if made is not None:
                o = base._ops[t][1]
                return Counterfactual(source=made[0], step=t, variable=f"location.obj{o}",
                                      readout_target=pair.readout_target,
                                      base_label=pair.base_label,
                                      counterfactual_label=pair.base_label)
        return None

    def _alternatives(self, op: tuple[int, int, int, int, int]
                      ) -> tuple[list[tuple], dict[str, list[tuple]]]:
        """Legal replacements of `op` that change one word (or the one `ops` token), and per
        violation kind the illegal ones: the object is where `op` finds it."""
        b, ops_style = self.params["n_boxes"], self.params["style"] == "ops"
        action, o, src, dst, tpl = op
        out = b
        boxes = range(b)
        if action == PUT:
            possible = [(PUT, o, out, d, tpl) for d in boxes if d != dst]
        elif action == MOVE:
            possible = [(MOVE, o, src, d, tpl) for d in boxes if d not in (src, dst)]
            possible += [(REMOVE, o, src, out, 0)] if ops_style else []
        else:
            possible = [(MOVE, o, src, d, 0) for d in boxes if d != src] if ops_style else []
        same_box, absent = [], []
        if src != out and (ops_style or action == MOVE):
            same_box = [(MOVE, o, src, src, 0 if ops_style else tpl)]  # `key>2` in box 2
        if ops_style:
            if src == out:
                absent = [(REMOVE, o, out, out, 0)]  # `key>out` in no box
        elif action != PUT:  # "... from box s' ..." while it is in box s
            absent = [(action, o, s, dst, tpl) for s in boxes if s not in (src, dst)]
        return possible, {"same_box": same_box, "absent_leave": absent}

    def violation(self, base: Episode, rng: np.random.Generator,
                  settings: dict[str, Any]) -> Violation | None:
        """At the last operation on some object (so nothing later mentions it), replace the
        operation by an impossible one and, in the possible twin, by a legal one that differs
        in one word of the same kind (a box number, or the one `ops` token): `same_box`, the
        object lands in the box it is already in (`move the key from box 2 to box 2`, or
        `key>2` while the key is in box 2); `absent_leave`, it leaves a box it is not in
        (`move the key from box 3 to box 1` while it is in box 2, or `key>out` while it is in
        no box). After the step the impossible episode's text goes on as the base's (the
        question's answer is where the impossible operation says the object went). The kind is
        drawn among the declared ones this episode admits, then the step."""
        ops = base._ops
        T = len(ops)
        last = sorted(self._last_touches(ops).values())
        steps = [T - 1] if settings["step"] == "last" else last
        kinds = list(settings["kinds"])
        edits = [self._alternatives(ops[t]) for t in steps]
        for kind in (kinds[i] for i in rng.permutation(len(kinds)).tolist()):
            for i in rng.permutation(len(steps)).tolist():
                t, (possible, impossible) = steps[i], edits[i]
                if not possible or not impossible[kind]:
                    continue
                good = possible[int(rng.integers(len(possible)))]
                bad = impossible[kind][int(rng.integers(len(impossible[kind])))]
                bad_ep = undefined_from(self._edit(base, {t: bad}, rng), t, base)
                return Violation(possible=self._edit(base, {t: good}, rng), impossible=bad_ep,
                                 step=t, kind=kind, variable=f"location.obj{ops[t][1]}")
        return None
