"""Input checks (fcn/validation.py): features and labels, one-sample batches like larger ones, overflowing sums,
the messages in full, and ``trusted_inputs``."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, softmax_loss
from fcn.validation import (
    InputFileError,
    check_features,
    check_fits_dtype,
    check_labels,
    regular_file,
    trusted_inputs,
    value_checks_enabled,
)

XP = fcn.get_backend().xp  # NumPy through array-api-compat


def test_nan_in_a_one_sample_batch_is_refused(backend):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend)
    X = np.asarray([[0.0, np.nan, 1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(X, np.asarray([0]))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_in_a_one_sample_batch_is_refused(bad):
    net = FullyConnectedNet(4, [3], 2, seed=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(np.asarray([[0.0, 1.0, bad, 2.0]]))


@pytest.mark.parametrize("label", [2, -1, 7])
def test_a_one_sample_label_out_of_range_is_refused(backend, label):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        net.loss(np.ones((1, 4)), np.asarray([label]))
    scores = backend.asarray(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        softmax_loss(scores, backend.asarray(np.asarray([label])))


@pytest.mark.parametrize("label", [0, 1])
def test_one_sample_labels_at_both_ends_of_the_range_are_accepted(label):
    net = FullyConnectedNet(4, [3], 2, seed=0)
    loss, _ = net.loss(np.ones((1, 4)), np.asarray([label]))
    assert np.isfinite(float(loss))


def test_label_range_is_checked_at_both_ends_in_larger_batches():
    scores = np.zeros((4, 3))
    with pytest.raises(ValueError, match="min -1, max 2"):
        softmax_loss(scores, np.asarray([0, 2, -1, 1]))
    with pytest.raises(ValueError, match="min 0, max 3"):
        softmax_loss(scores, np.asarray([0, 3, 1, 1]))
    loss, _ = softmax_loss(scores, np.asarray([0, 2, 2, 1]))
    assert float(loss) == pytest.approx(np.log(3))


def test_an_empty_batch_has_no_labels_to_check():
    check_labels(fcn.get_backend().xp, np.zeros(0, dtype=np.int64), 0, 3)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_finite_data_whose_sum_overflows_is_accepted(backend):
    """float32 values near the top of the range: finite each, but their sum overflows to inf."""
    big = np.full((3, 4), 3.0e38, dtype=np.float32)
    assert np.isinf(big.sum(dtype=np.float32))  # the premise
    X = backend.asarray(big)
    check_features(backend.xp, X, 4)  # no error
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend, dtype="float32")
    data = {"X_train": big, "y_train": np.asarray([0, 1, 0]), "X_val": big, "y_val": np.asarray([1, 1, 0])}
    fcn.Solver(net, data, verbose=False, progress=False, batch_size=3)  # validated without error


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_nan_hidden_among_overflowing_values_is_still_found(backend):
    big = np.full((3, 4), 3.0e38, dtype=np.float32)
    big[2, 3] = np.nan
    with pytest.raises(ValueError, match="^X contains NaN"):
        check_features(backend.xp, backend.asarray(big), 4)
    big[2, 3] = np.inf
    with pytest.raises(ValueError, match="^X contains NaN"):
        check_features(backend.xp, backend.asarray(big), 4)


def test_integer_features_need_no_finiteness_check():
    check_features(XP, np.asarray([[1, 2], [3, 4]]), 2)


def test_check_features_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"^X must have shape \(N, d_1, ..., d_k\), got shape \(4,\)"):
        check_features(XP, np.zeros(4))
    with pytest.raises(ValueError, match="6 features per sample .* model expects 5"):
        check_features(XP, np.zeros((2, 2, 3)), 5)
    check_features(XP, np.zeros((2, 2, 3)), 6)
    with pytest.raises(TypeError, match="real numbers"):
        check_features(XP, np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="X_val contains NaN"):
        check_features(XP, np.full((2, 2), np.nan), where="X_val")


def test_check_labels_errors_name_the_problem():
    with pytest.raises(TypeError, match="integer class labels"):
        check_labels(XP, np.zeros(3), 3, 2)
    with pytest.raises(ValueError, match=r"shape \(4,\) to match the inputs, got \(3,\)"):
        check_labels(XP, np.zeros(3, dtype=np.int64), 4, 2)


def test_check_labels_messages_in_full():
    with pytest.raises(
        ValueError,
        match=r"^y has labels outside \[0, 3\): min 0, max 3\. \(On a GPU such labels would not raise; "
        r"fcn checks them\.\)$",
    ):
        check_labels(XP, np.asarray([0, 3]), 2, 3)
    with pytest.raises(TypeError, match=r"^y must hold integer class labels, got dtype float64$"):
        check_labels(XP, np.zeros(2), 2, 3)
    with pytest.raises(ValueError, match=r"^y must have shape \(3,\) to match the inputs, got \(2,\)$"):
        check_labels(XP, np.zeros(2, dtype=np.int64), 3, 3)
    with pytest.raises(TypeError, match=r"^X must hold real numbers, got dtype bool$"):
        check_features(XP, np.zeros((2, 2), dtype=bool))


def test_trusted_inputs_turns_value_checks_off_and_back_on():
    assert value_checks_enabled()
    X = np.asarray([[np.nan, 1.0]])
    with trusted_inputs():
        assert not value_checks_enabled()
        check_features(XP, X)  # skipped inside
        check_labels(XP, np.asarray([5]), 1, 2)
        check_fits_dtype(XP, XP.asarray([[1e39]]), XP.float32)
    assert value_checks_enabled()
    with pytest.raises(ValueError):
        check_features(XP, X)
    with pytest.raises(RuntimeError), trusted_inputs():
        raise RuntimeError("leaving the block by an exception re-enables the checks too")
    assert value_checks_enabled()


def test_shape_checks_stay_on_for_trusted_inputs():
    with trusted_inputs(), pytest.raises(ValueError, match="features per sample"):
        check_features(XP, np.zeros((2, 3)), 4)


@pytest.mark.parametrize("value", [1e39, -1e39])
def test_float64_values_beyond_float32_at_either_end_are_refused_by_a_float32_model(value):
    """-1e39 overflows to -inf in float32 as 1e39 does to inf: the range check looks at both ends."""
    X = np.zeros((3, 4))
    X[1, 2] = value
    with pytest.raises(
        ValueError,
        match=r"^X holds values up to 1e\+39 in magnitude, beyond the range of float32 \(largest 3\.4e\+38\), the "
        r"model's dtype: they would become infinite\. Scale the data, or use a float64 model$",
    ):
        check_fits_dtype(XP, XP.asarray(X), XP.float32)
    net = FullyConnectedNet(4, [3], 2, seed=0, dtype="float32")
    with pytest.raises(ValueError, match=r"beyond the range of float32 \(largest 3\.4e\+38\)"):
        net.loss(X)
    check_fits_dtype(XP, XP.asarray(X / 10), XP.float32)  # 1e38 fits


@pytest.mark.parametrize(
    ("X", "dtype"),
    [
        (np.asarray([[1.0, np.inf]], dtype=np.float32), XP.float64),
        (np.asarray([[1.0, np.inf]], dtype=">f8"), XP.float64),  # same range, other byte order: a different dtype
    ],
    ids=["wider", "same-range"],
)
def test_a_cast_that_does_not_narrow_the_range_is_never_refused(X, dtype):
    """Only a narrower dtype can turn a finite value infinite, so only then are the values read; an infinity
    already in the data is the finiteness check's to report (check_features), not a matter of range."""
    check_fits_dtype(XP, X, dtype)


def test_an_empty_float64_batch_fits_a_float32_model():
    """No values, nothing to overflow: the range check must not take the max of an empty array."""
    check_fits_dtype(XP, np.zeros((0, 4)), XP.float32)
    net = FullyConnectedNet(4, [3], 2, seed=0, dtype="float32")
    assert net.loss(np.zeros((0, 4))).shape == (0, 2)


# -- input files --------------------------------------------------------------------------------------------------


def _bind_socket(path):
    """A Unix socket's file stays behind once the socket is closed."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


@pytest.mark.parametrize(
    ("make", "message", "missing"),
    [
        (lambda p: None, r"^image .*cat\.png does not exist$", True),
        (lambda p: p.mkdir(), r"cat\.png is a folder, not a readable image$", False),
        (os.mkfifo, r"cat\.png is a FIFO, not a regular file: not a readable image$", False),
        (_bind_socket, r"cat\.png is a socket, not a regular file: not a readable image$", False),
        (lambda p: os.symlink("/dev/zero", p), r"cat\.png is a device, not a regular file", False),
        (lambda p: os.symlink(p, p), r"^cannot read image .*cat\.png: \S", False),  # a link to itself: ELOOP
    ],
    ids=["missing", "folder", "fifo", "socket", "device", "loop"],
)
def test_only_regular_files_are_input_files(tmp_path, make, message, missing):
    path = tmp_path / "cat.png"
    make(path)
    with pytest.raises(InputFileError, match=message) as info:
        regular_file(path, "image")  # a FIFO is never opened: that would wait for a writer forever
    assert info.value.path == path and info.value.missing is missing and isinstance(info.value, ValueError)


def test_a_regular_file_is_returned_as_a_path(tmp_path):
    (tmp_path / "cat.png").write_bytes(b"")
    assert regular_file(str(tmp_path / "cat.png"), "image") == tmp_path / "cat.png"
