"""Flips and crops of image batches (fcn/training/augment.py): exact
against a per-image NumPy reference, identical on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import image_data, recipe_net, recipe_solver

import fcn
from fcn.training.augment import Augmenter, augment_batch, flip_crop, parse_augment


def _reference(X, flips, offsets, pad):
    """Per-image loop with np.pad and slicing: obviously right, slow."""
    n, _, h, w = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(X)
    for i in range(n):
        dy, dx = offsets[i]
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def _untemper(word: int) -> int:
    """Inverse of MT19937's output tempering: the state word that comes out as ``word``."""

    def undo_right(y, s):
        x = y
        for _ in range(32 // s + 1):
            x = y ^ (x >> s)
        return x

    def undo_left(y, s, mask):
        x = y
        for _ in range(32 // s + 1):
            x = y ^ ((x << s) & mask)
        return x

    return undo_right(undo_left(undo_left(undo_right(word, 18), 15, 0xEFC60000), 7, 0x9D2C5680), 11)


def _generator_drawing(values):
    """A real ``numpy.random.Generator`` whose next ``random()`` doubles are exactly ``values`` (multiples of 2**-53).

    MT19937 builds a double from the high 27 and 26 bits of two output words, and its state can be set: each
    value's words are untempered into the key."""
    words = []
    for v in values:
        k = int(v * 2**53)
        words += [(k >> 26) << 5, (k & (2**26 - 1)) << 6]
    key = np.zeros(624, dtype=np.uint32)
    key[: len(words)] = [_untemper(w) for w in words]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 0}}
    return np.random.Generator(bits)


@pytest.fixture
def images(rng):
    return rng.standard_normal((6, 3, 8, 10))


def test_flip_twice_is_identity(to_dev, images):
    X = to_dev(images)
    flips = np.ones(6, dtype=bool)
    once = flip_crop(X, flips)
    assert not np.array_equal(fcn.to_host(once), images)
    np.testing.assert_array_equal(fcn.to_host(flip_crop(once, flips)), images)


def test_flip_mirrors_only_the_flagged_images(to_dev, images):
    flips = np.array([True, False, True, False, False, True])
    out = fcn.to_host(flip_crop(to_dev(images), flips))
    np.testing.assert_array_equal(out[flips], images[flips][..., ::-1])
    np.testing.assert_array_equal(out[~flips], images[~flips])


def test_crop_offsets(to_dev, images):
    X, pad = to_dev(images), 3
    np.testing.assert_array_equal(fcn.to_host(flip_crop(X, offsets=np.full((6, 2), pad), pad=pad)), images)
    down_right = fcn.to_host(flip_crop(X, offsets=np.zeros((6, 2), dtype=int), pad=pad))
    np.testing.assert_array_equal(down_right[:, :, pad:, pad:], images[:, :, :-pad, :-pad])
    assert not down_right[:, :, :pad, :].any() and not down_right[:, :, :, :pad].any()
    up_left = fcn.to_host(flip_crop(X, offsets=np.full((6, 2), 2 * pad), pad=pad))
    np.testing.assert_array_equal(up_left[:, :, :-pad, :-pad], images[:, :, pad:, pad:])
    assert not up_left[:, :, -pad:, :].any() and not up_left[:, :, :, -pad:].any()
    rows_only = fcn.to_host(flip_crop(X, offsets=np.tile([[pad + 1, pad]], (6, 1)), pad=pad))
    np.testing.assert_array_equal(rows_only[:, :, :-1, :], images[:, :, 1:, :])


def test_random_flips_and_crops_match_the_reference(to_dev, rng, images):
    flips, offsets = rng.random(6) < 0.5, rng.integers(0, 9, size=(6, 2))
    out = flip_crop(to_dev(images), flips, offsets, pad=4)
    np.testing.assert_array_equal(fcn.to_host(out), _reference(images, flips, offsets, 4))


def test_flips_are_read_as_truth_values(to_dev, images):
    """Any non-zero flag flips its image, as in a boolean mask; 0 leaves it."""
    flags = np.array([0, 2, 0, 1, 0, 7])
    out = fcn.to_host(flip_crop(to_dev(images), flags))
    np.testing.assert_array_equal(out, fcn.to_host(flip_crop(to_dev(images), flags != 0)))


def test_a_zero_pad_crops_nothing(to_dev, images):
    flips = np.array([True, False, True, False, False, True])
    out = fcn.to_host(flip_crop(to_dev(images), flips, np.zeros((6, 2), dtype=int), pad=0))
    np.testing.assert_array_equal(out, _reference(images, flips, np.zeros((6, 2), dtype=int), 0))
    aug = Augmenter("crop", pad=0)
    assert aug.pad == 0
    np.testing.assert_array_equal(fcn.to_host(aug(to_dev(images), np.random.default_rng(0))), images)


@pytest.mark.parametrize("shape", [(5, 3, 8, 3), (5, 4, 8, 1), (5, 1, 8, 4)])
def test_channels_first_images_of_a_channel_like_width_are_accepted(to_dev, rng, shape):
    """A width of 1, 3 or 4 looks like channels-last only when axis 1 cannot be channels: here it can."""
    X = rng.standard_normal(shape)
    flips, offsets = rng.random(5) < 0.5, rng.integers(0, 9, size=(5, 2))
    np.testing.assert_array_equal(fcn.to_host(flip_crop(to_dev(X), flips, offsets)), _reference(X, flips, offsets, 4))
    assert Augmenter("flip,crop")(to_dev(X), np.random.default_rng(0)).shape == shape


@pytest.mark.parametrize("spec", ["flip", "crop", "flip,crop"])
def test_one_seed_gives_the_same_batch_on_every_backend(backend, to_dev, rng, spec):
    X = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    aug = Augmenter(spec)
    out = aug(to_dev(X), np.random.default_rng(5))
    assert fcn.namespace_of(out).name == backend.name and out.dtype == to_dev(X).dtype
    flips, offsets = aug.draw(np.random.default_rng(5), 16)
    np.testing.assert_array_equal(fcn.to_host(out), _reference(X, flips, offsets, aug.pad))
    np.testing.assert_array_equal(fcn.to_host(out), augment_batch(X, spec, np.random.default_rng(5)))


def test_draws_what_is_on_and_nothing_else():
    aug = Augmenter("flip")
    flips, offsets = aug.draw(np.random.default_rng(0), 1000)
    assert 0.45 < flips.mean() < 0.55 and not offsets.any()
    flips, offsets = Augmenter("crop").draw(np.random.default_rng(0), 1000)
    assert not flips.any() and offsets.min() == 0 and offsets.max() == 8
    rng = np.random.default_rng(0)
    X = np.ones((4, 3, 5, 5))
    assert Augmenter(None)(X, rng) is X
    assert rng.random() == np.random.default_rng(0).random()  # no draws were made


@pytest.mark.parametrize("spec", ["flip", "crop", "flip,crop"])
def test_draws_are_boolean_flips_and_int64_offsets(spec):
    flips, offsets = Augmenter(spec).draw(np.random.default_rng(0), 7)
    assert flips.dtype == np.bool_ and flips.shape == (7,)
    assert offsets.dtype == np.int64 and offsets.shape == (7, 2)


def test_a_flip_has_probability_exactly_one_half():
    """The generator's doubles are the 2**53 multiples of 2**-53 in [0, 1), equally likely: flipping exactly half
    of them splits them at 0.5, with 0.5 itself in the upper half (the lower half ends at 0.5 - 2**-53)."""
    values = [0.0, 0.5 - 2**-53, 0.5, 1 - 2**-53]
    assert _generator_drawing(values).random(4).tolist() == values  # the generator draws what it was set to
    flips, _ = Augmenter("flip").draw(_generator_drawing(values), 4)
    assert flips[0] == flips[1] and flips[2] == flips[3] and flips[0] != flips[2]


def test_repr_names_the_augmentations_and_the_pad():
    assert repr(Augmenter("crop, flip", pad=2)) == "Augmenter('flip,crop', pad=2)"
    assert repr(Augmenter("flip")) == "Augmenter('flip', pad=0)"  # no crop: the pad plays no part
    assert repr(Augmenter(None)) == "Augmenter('none', pad=0)"


def test_successive_batches_differ_and_repeat_from_the_seed(rng):
    X = rng.standard_normal((32, 3, 8, 8))
    aug = Augmenter("flip,crop")
    gen = np.random.default_rng(1)
    a, b = aug(X, gen), aug(X, gen)
    assert not np.array_equal(a, b)
    gen = np.random.default_rng(1)
    np.testing.assert_array_equal(aug(X, gen), a)
    np.testing.assert_array_equal(aug(X, gen), b)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("flip,crop", ("flip", "crop")),
        ("crop, flip", ("flip", "crop")),
        (["crop"], ("crop",)),
        ("flip", ("flip",)),
        (None, ()),
        ("", ()),
        ("none", ()),
    ],
)
def test_parse_augment(spec, expected):
    assert parse_augment(spec) == expected


@pytest.mark.parametrize("spec", ["rotate", "flip,mixup", "flip;crop"])
def test_unknown_augmentation_names_the_argument(spec):
    hint = r"choose from flip, crop \(comma-separated, e\.g\. 'flip,crop'\)$"
    with pytest.raises(ValueError, match=r"augment: unknown augmentation .*" + hint):
        Augmenter(spec)


def test_non_image_data_is_refused(to_dev):
    remedy = (
        r"got shape \(4, 3072\); keep the images unflattened \(fcn\.get_CIFAR10_data gives \(N, 3, 32, 32\)\) "
        r"or turn augmentation off$"
    )
    with pytest.raises(ValueError, match=r"augment: flips and crops need image-shaped data \(N, C, H, W\), " + remedy):
        Augmenter("flip")(to_dev(np.ones((4, 3072))), np.random.default_rng(0))


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize(
    ("where", "apply"),
    [
        ("augment", lambda X: Augmenter("flip,crop")(X, np.random.default_rng(0))),
        ("augment", lambda X: augment_batch(X, "flip", np.random.default_rng(0))),
        ("flip_crop", lambda X: flip_crop(X, flips=np.ones(X.shape[0], dtype=bool))),
    ],
    ids=["Augmenter", "augment_batch", "flip_crop"],
)
def test_channels_last_images_are_refused_naming_the_layout_they_need(to_dev, where, apply, channels):
    """A flip of (N, H, W, C) would mirror the colour channels and a crop would pad them: refused, never run."""
    X = to_dev(np.ones((5, 32, 32, channels)))
    layouts = rf"channels-last shape \(5, 32, 32, {channels}\); transpose them to \(N, {channels}, 32, 32\)"
    message = rf"{where}: flips and crops need channels-first images .*{layouts}"
    with pytest.raises(ValueError, match=message):
        apply(X)
    assert apply(to_dev(np.ones((5, channels, 32, 32)))).shape == (5, channels, 32, 32)  # the same, channels first


def test_bad_offsets_and_pad_are_refused(to_dev, images):
    X = to_dev(images)
    with pytest.raises(ValueError, match=r"offsets must lie in \[0, 8\]"):
        flip_crop(X, offsets=np.full((6, 2), 9), pad=4)
    with pytest.raises(ValueError, match="offsets must be integers of shape"):
        flip_crop(X, offsets=np.zeros((6, 3), dtype=int))
    with pytest.raises(ValueError, match="flips must have shape"):
        flip_crop(X, flips=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="pad must be a non-negative integer"):
        Augmenter("crop", pad=-1)


# -- augmentation in a training run ---------------------------------------------------------------------------------


def test_augmentation_changes_the_batches_and_repeats_from_the_seed():
    data = image_data()
    plain = recipe_solver(recipe_net(), data, augment=None, num_epochs=1)
    plain.train()
    aug = recipe_solver(recipe_net(), data, augment="flip", num_epochs=1)
    aug.train()
    again = recipe_solver(recipe_net(), data, augment="flip", num_epochs=1)
    again.train()
    assert aug.loss_history != plain.loss_history
    assert again.loss_history == aug.loss_history


def test_augmentation_needs_image_shaped_data():
    data = image_data()
    flat = {k: v.reshape(len(v), -1) if k.startswith("X") else v for k, v in data.items()}
    with pytest.raises(ValueError, match=r"augment: flips and crops need image-shaped data \(N, C, H, W\)"):
        recipe_solver(recipe_net(), flat, augment="crop")
    recipe_solver(recipe_net(), flat, augment=None).train()  # flat data is fine without augmentation


def test_one_augmenter_serves_batches_of_the_same_shape_on_different_devices(rng):
    """The index tables are cached per device: a table made for one backend is not used on another's batch."""
    strict = pytest.importorskip("array_api_strict")
    X = rng.standard_normal((6, 3, 8, 8))
    aug = Augmenter("flip,crop")
    on_host = aug(X, np.random.default_rng(2))
    for device in ("device1", "CPU_DEVICE"):
        target = fcn.get_backend("array_api_strict", strict.Device(device))
        out = aug(target.asarray(X), np.random.default_rng(2))
        assert fcn.namespace_of(out) == target
        np.testing.assert_array_equal(fcn.to_host(out), on_host)


def test_each_training_batch_gets_fresh_flips_from_the_run_generator(monkeypatch):
    """The flips of a run come from one generator that moves on: successive batches are flipped differently."""
    solver = recipe_solver(recipe_net(), image_data(), augment="flip", num_epochs=1)
    augmenter = solver.train_step.augmenter
    draws = []

    def recording_draw(rng, n):
        flips, offsets = Augmenter.draw(augmenter, rng, n)
        draws.append(tuple(flips))
        return flips, offsets

    monkeypatch.setattr(augmenter, "draw", recording_draw)
    solver.train()
    assert len(draws) == solver.num_iters >= 4
    assert len(set(draws)) == len(draws)  # 15 flips a batch: a repeat by chance has probability below 1e-3
