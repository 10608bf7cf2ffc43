"""dupscope.matching: the one rule that matches user-given names to image rows (ground truth and
prediction keys alike)."""

from __future__ import annotations

import pytest

from dupscope.errors import EvaluationError, PredictionsError
from dupscope.evaluate import resolve_items
from dupscope.explorer.predictions import align_predictions
from dupscope.matching import AMBIGUOUS, UNKNOWN, PathIndex

PATHS = ["a/cat1.jpg", "./b/../b/dog1.jpg", "x/same.jpg", "y/same.jpg", "c\\win.jpg"]
RESOLVED = ["/data/a/cat1.jpg", "/data/b/dog1.jpg", "/data/x/same.jpg", "/data/y/same.jpg", "/data/c/win.jpg"]


@pytest.mark.parametrize("name,row", [
    ("a/cat1.jpg", 0), ("/data/b/dog1.jpg", 1), ("b/dog1.jpg", 1), ("cat1.jpg", 0),
    ("/elsewhere/cat1.jpg", 0), ("c/win.jpg", 4), ("win.jpg", 4), ("same.jpg", AMBIGUOUS),
    ("zebra.jpg", UNKNOWN),
])
def test_rule(name, row):
    assert PathIndex(PATHS, RESOLVED).row(name) == row


def test_ground_truth_and_predictions_follow_the_same_rule():
    names = ["a/cat1.jpg", "b/dog1.jpg", "/elsewhere/win.jpg"]
    rows = resolve_items(names, PATHS, RESOLVED)
    preds = align_predictions({n: float(i) for i, n in enumerate(names)}, PATHS)
    assert list(rows) == [0, 1, 4]
    assert [preds.score[r] for r in rows] == [0.0, 1.0, 2.0]
    with pytest.raises(EvaluationError, match="several images"):
        resolve_items(["same.jpg"], PATHS)
    with pytest.raises(PredictionsError, match="several images"):
        align_predictions({"same.jpg": 1.0}, PATHS)
