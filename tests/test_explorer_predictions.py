"""Tests for dupscope.explorer.predictions: the restricted unpickler and alignment to the images."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from dupscope.explorer.predictions import (
    PredictionsError,
    UnsafePickleError,
    align_predictions,
    load_predictions,
    read_predictions,
)

PATHS = ["a/cat1.jpg", "a/cat2.jpg", "b/dog1.jpg", "b/dog2.jpg"]
LABELS = ["cat", "cat", "dog", "dog"]


def _dump(tmp_path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    p = tmp_path / "preds.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    return p


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_and_plain_containers_load_at_every_protocol(tmp_path, protocol):
    obj = {
        "scores": np.arange(4, dtype=np.float32),
        "matrix": np.eye(3, dtype=np.float64)[::-1],  # not contiguous: the _reconstruct path
        "scalar": np.float64(0.5),
        "list": [1, 2.5, "x", (3, None), {7}, True],
    }
    got = load_predictions(_dump(tmp_path, obj, protocol))
    np.testing.assert_array_equal(got["scores"], obj["scores"])
    np.testing.assert_array_equal(got["matrix"], obj["matrix"])
    assert got["scalar"] == 0.5 and got["list"] == obj["list"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj", [_Evil(), [np.zeros(2), _Evil()]])
def test_refuses_other_globals_with_name_and_hint(tmp_path, obj):
    with pytest.raises(UnsafePickleError) as info:
        load_predictions(_dump(tmp_path, obj))
    msg = str(info.value)
    assert "system" in msg and "--trust-pickle" in msg and "preds.pkl" in msg


def test_refuses_arbitrary_class_even_harmless(tmp_path):
    from collections import OrderedDict

    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load_predictions(_dump(tmp_path, OrderedDict(a=1)))


def test_trust_pickle_loads_anything(tmp_path):
    from collections import OrderedDict

    assert load_predictions(_dump(tmp_path, OrderedDict(a=1)), trust_pickle=True) == {"a": 1}


def test_codecs_encode_only_latin1(tmp_path):
    import _codecs

    class Rot:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    with pytest.raises(UnsafePickleError, match="rot13"):
        load_predictions(_dump(tmp_path, Rot(), protocol=2))


@pytest.mark.parametrize("scores", [[0.1, 0.2, 0.3, 0.4], (0.1, 0.2, 0.3, 0.4),
                                    np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float16),
                                    np.array([[0.1], [0.2], [0.3], [0.4]])])
def test_sequence_of_scores(scores):
    p = align_predictions(scores, PATHS)
    assert p.top_class is None
    np.testing.assert_allclose(p.score, [0.1, 0.2, 0.3, 0.4], atol=1e-3)
    assert p.describe(2) == "0.300"


def test_class_scores_named_from_labels():
    m = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    p = align_predictions(m, PATHS, labels=LABELS)
    assert list(p.top_class) == [0, 1, 0, 1]
    np.testing.assert_allclose(p.score, [0.9, 0.8, 0.6, 0.7])
    assert p.class_names == ["cat", "dog"]
    assert p.describe(1) == "dog 0.800"


def test_class_scores_fall_back_to_index_when_labels_do_not_map():
    m = np.random.default_rng(0).random((4, 3))
    p = align_predictions(m, PATHS, labels=LABELS)  # 2 labels, 3 classes
    assert p.class_names == ["0", "1", "2"]
    assert p.describe(0).split()[0] == str(int(np.argmax(m[0])))


def test_length_mismatch_names_both_lengths():
    with pytest.raises(PredictionsError) as info:
        align_predictions([0.1, 0.2, 0.3], PATHS)
    assert "3" in str(info.value) and "4" in str(info.value)
    with pytest.raises(PredictionsError, match="5 entries.*4 images"):
        align_predictions(np.zeros((5, 2)), PATHS)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(PredictionsError):
        align_predictions(0.5, PATHS)
    with pytest.raises(PredictionsError):
        align_predictions(np.zeros((4, 2, 2)), PATHS)
    with pytest.raises(PredictionsError):
        align_predictions("nope", PATHS)


def test_dict_by_path_and_basename_reports_missing_and_unmatched():
    preds = {"a/cat1.jpg": 0.9, "dog1.jpg": 0.2, "elsewhere/cat2.jpg": 0.5, "zebra.jpg": 1.0}
    p = align_predictions(preds, PATHS)
    np.testing.assert_allclose(p.score[:3], [0.9, 0.5, 0.2])
    assert np.isnan(p.score[3])
    assert p.missing == ["b/dog2.jpg"]
    assert p.unmatched == ["zebra.jpg"]
    assert p.describe(3) == ""


def test_dict_of_class_vectors():
    preds = {name.split("/")[1]: [0.1, 0.9] for name in PATHS}
    p = align_predictions(preds, PATHS, labels=LABELS)
    assert list(p.top_class) == [1, 1, 1, 1] and p.describe(0) == "dog 0.900"


def test_dict_ambiguous_basename_and_double_entries_are_errors():
    paths = ["x/a.jpg", "y/a.jpg"]
    with pytest.raises(PredictionsError, match="several images"):
        align_predictions({"a.jpg": 1.0}, paths)
    with pytest.raises(PredictionsError, match="both match"):
        align_predictions({"a/cat1.jpg": 1.0, "cat1.jpg": 0.5}, PATHS)
    with pytest.raises(PredictionsError, match="none of its"):
        align_predictions({"nothing.jpg": 1.0}, PATHS)


def test_read_predictions_end_to_end(tmp_path):
    p = read_predictions(_dump(tmp_path, np.array([1.0, 2.0, 3.0, 4.0])), PATHS)
    np.testing.assert_array_equal(p.score, [1, 2, 3, 4])


# -- hardening: what a hostile pickle may build ------------------------------------------------
def test_shared_references_cannot_expand_to_gigabytes(tmp_path):
    level = [0.5] * 100
    for _ in range(4):  # 100**5 values described by a pickle of about a kilobyte
        level = [level] * 100
    p = _dump(tmp_path, level)
    assert p.stat().st_size < 4096
    with pytest.raises(UnsafePickleError, match="more than"):
        load_predictions(p)


def test_expansion_bound_grows_with_the_number_of_images(tmp_path):
    p = _dump(tmp_path, np.zeros((4, 10)))
    assert load_predictions(p, max_elements=40).shape == (4, 10)
    with pytest.raises(UnsafePickleError):
        load_predictions(p, max_elements=39)


class _HugeArray:
    """Pickles as an ndarray that declares 2**59 float64 values and carries none."""

    def __reduce__(self):
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (2**59,), np.dtype("<f8"), False, b""))


def test_declared_sizes_and_broken_files_are_one_line_errors(tmp_path):
    huge = tmp_path / "huge.pkl"
    huge.write_bytes(pickle.dumps(_HugeArray(), protocol=4))
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(pickle.dumps(list(range(100)))[:50])
    for bad, message in ((huge, "not a readable predictions pickle"), (empty, "empty"),
                         (cut, "not a readable"), (tmp_path, "folder")):
        with pytest.raises(PredictionsError, match=message):
            load_predictions(bad)
