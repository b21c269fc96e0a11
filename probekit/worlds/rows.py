"""The rows and features of the `pairs` and `violations` tables a task generates: the pair's
episodes side by side in prefixed columns (`source.`, `placebo.`, `possible.`, `impossible.`),
with where they differ from the base."""

from __future__ import annotations

from typing import Any

import numpy as np

# The columns of the `pairs` table besides the `source.` and `placebo.` episode columns.
PAIR_COLUMNS = {
    "base_index": "row of the base episode in the `episodes` table, same split",
    "step": "the intervened step",
    "variable": "the intervened state variable",
    "readout_target": "the target the readout is scored on",
    "base_label": "the readout's label in the base world",
    "counterfactual_label": "the readout's label if the model follows the source world",
    "diff_steps": "steps whose text differs between base and source",
    "diff_tokens": "positions in `tokens` that differ between base and source (the closing "
                   "question's answer word, the readout itself, left out)",
    "changed": "label columns (target names) whose last-step value differs between base and "
               "source",
    "has_placebo": "whether the pair has a placebo; without one every placebo column is "
                   "empty: [] for lists ([-1, -1] for `placebo.query_span`), \"\" for text, "
                   "-1 for `placebo_step`",
    "placebo_step": "the placebo's intervened step (-1 without one)",
    "placebo_variable": "the state variable the placebo changes (\"\" without one)",
    "placebo_diff_steps": "steps whose text differs between base and placebo",
    "placebo_diff_tokens": "positions in `tokens` that differ between base and placebo",
    "placebo_changed": "label columns whose last-step value differs between base and placebo "
                       "(never the readout)",
}
VIOLATION_COLUMNS = {
    "base_index": "row of the base episode in the `episodes` table, same split",
    "step": "the step both edits change",
    "kind": "the rule the impossible edit breaks",
    "variable": "what the edits change",
    "possible_diff_steps": "steps whose text differs between base and possible episode",
    "possible_diff_tokens": "positions in `tokens` that differ between base and possible "
                            "episode (the closing question's answer word left out)",
    "impossible_diff_steps": "steps whose text differs between base and impossible episode",
    "impossible_diff_tokens": "positions in `tokens` that differ between base and impossible "
                              "episode (the closing question's answer word left out)",
}


def _empty_like(row: dict[str, Any]) -> dict[str, Any]:
    """An episode row with the keys of `row` and every value empty: lists empty (but
    `query_span` [-1, -1], as for an episode without a question), arrays (`frames`) with no
    frames, strings empty."""
    def empty(k: str, v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return np.zeros((0, *v.shape[1:]), dtype=v.dtype)
        if isinstance(v, list):
            return [-1, -1] if k == "query_span" else []
        return ""

    return {k: empty(k, v) for k, v in row.items()}


def pair_row(index: int, pair) -> dict[str, Any]:
    """One row of the `pairs` table (see PAIR_COLUMNS)."""
    placebo = pair.placebo
    row = {"base_index": index, "step": pair.step, "variable": pair.variable,
           "readout_target": pair.readout_target, "base_label": pair.base_label,
           "counterfactual_label": pair.counterfactual_label, "diff_steps": pair.diff_steps,
           "diff_tokens": pair.diff_tokens, "changed": pair.changed,
           "has_placebo": placebo is not None,
           "placebo_step": -1 if placebo is None else placebo.step,
           "placebo_variable": "" if placebo is None else placebo.variable,
           "placebo_diff_steps": [] if placebo is None else placebo.diff_steps,
           "placebo_diff_tokens": [] if placebo is None else placebo.diff_tokens,
           "placebo_changed": [] if placebo is None else placebo.changed}
    source = pair.source.row()
    row.update({f"source.{k}": v for k, v in source.items()})
    placebo_row = _empty_like(source) if placebo is None else placebo.source.row()
    row.update({f"placebo.{k}": v for k, v in placebo_row.items()})
    return row


def violation_row(index: int, vio) -> dict[str, Any]:
    """One row of the `violations` table (see VIOLATION_COLUMNS)."""
    row = {"base_index": index, "step": vio.step, "kind": vio.kind, "variable": vio.variable,
           "possible_diff_steps": vio.possible_diff_steps,
           "possible_diff_tokens": vio.possible_diff_tokens,
           "impossible_diff_steps": vio.impossible_diff_steps,
           "impossible_diff_tokens": vio.impossible_diff_tokens}
    row.update({f"possible.{k}": v for k, v in vio.possible.row().items()})
    row.update({f"impossible.{k}": v for k, v in vio.impossible.row().items()})
    return row


def pair_features(episode, label: str = "int64"):
    """Features of the `pairs` table, from those of the `episodes` table; `label` is the
    type of the readout labels (float64 for regressed targets)."""
    import datasets

    ints = datasets.List(datasets.Value("int64"))
    names = datasets.List(datasets.Value("string"))
    features = {"base_index": datasets.Value("int64"), "step": datasets.Value("int64"),
                "variable": datasets.Value("string"),
                "readout_target": datasets.Value("string"),
                "base_label": datasets.Value(label),
                "counterfactual_label": datasets.Value(label),
                "diff_steps": ints, "diff_tokens": ints, "changed": names,
                "has_placebo": datasets.Value("bool"), "placebo_step": datasets.Value("int64"),
                "placebo_variable": datasets.Value("string"), "placebo_diff_steps": ints,
                "placebo_diff_tokens": ints, "placebo_changed": names}
    features.update({f"source.{k}": v for k, v in episode.items()})
    features.update({f"placebo.{k}": v for k, v in episode.items()})
    return datasets.Features(features)


def violation_features(episode):
    """Features of the `violations` table, from those of the `episodes` table."""
    import datasets

    ints = datasets.List(datasets.Value("int64"))
    features = {"base_index": datasets.Value("int64"), "step": datasets.Value("int64"),
                "kind": datasets.Value("string"), "variable": datasets.Value("string"),
                "possible_diff_steps": ints, "possible_diff_tokens": ints,
                "impossible_diff_steps": ints, "impossible_diff_tokens": ints}
    features.update({f"possible.{k}": v for k, v in episode.items()})
    features.update({f"impossible.{k}": v for k, v in episode.items()})
    return datasets.Features(features)
