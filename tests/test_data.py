"""Tests for jaxnets.data: shapes, dtypes, splits, standardization and the generated tasks."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets import data

SPLITS = ("train", "val", "test")

# name -> (size of the whole data set, one example's shape, task, n_classes, output_dim)
REAL = {
    "digits": (1797, (64,), "multiclass", 10, 10),
    "digits_image": (1797, (8, 8, 1), "multiclass", 10, 10),
    "digits_sequence": (1797, (8, 8), "multiclass", 10, 10),
    "breast_cancer": (569, (30,), "binary", 2, 1),
    "wine": (178, (13,), "multiclass", 3, 3),
    "iris": (150, (4,), "multiclass", 3, 3),
}
SKLEARN_NAME = {name: name.split("_")[0] if name.startswith("digits") else name for name in REAL}
SMALL_OPTIONS = {
    "adding": {"length": 12, "n_samples": 300},
    "copy": {"length": 6, "n_symbols": 4, "n_copy": 3, "n_samples": 300},
    "spirals": {"n_samples": 300},
}
LOSS = {
    "binary": "binary_crossentropy",
    "multiclass": "sparse_categorical_crossentropy",
    "regression": "mse",
}


def _load(name: str, **kwargs) -> data.Dataset:
    return data.load(name, **{**SMALL_OPTIONS.get(name, {}), **kwargs})


def _arrays(ds: data.Dataset) -> dict[str, np.ndarray]:
    return {f"{kind}_{split}": getattr(ds, f"{kind}_{split}") for kind in "xy" for split in SPLITS}


def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    return getattr(datasets, f"load_{SKLEARN_NAME[name]}")(return_X_y=True)


def _dense_ranks(x: np.ndarray) -> np.ndarray:
    """Replace each column's values by their rank among the column's distinct values."""
    return np.stack([np.unique(col, return_inverse=True)[1] for col in x.T], axis=1)


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


# --- every data set -------------------------------------------------------------------------------------


def test_names_and_tasks_constants():
    assert data.TASKS == ("binary", "multiclass", "regression")
    assert set(data.NAMES) == set(REAL) | set(SMALL_OPTIONS)


@pytest.mark.parametrize("name", data.NAMES)
def test_dtypes_contiguity_and_metadata(name):
    ds = _load(name)
    assert ds.name == name
    assert ds.task in data.TASKS
    assert ds.default_loss == LOSS[ds.task]
    for key, arr in _arrays(ds).items():
        assert isinstance(arr, np.ndarray), key
        assert arr.flags.c_contiguous, key
        if key.startswith("x"):
            assert arr.dtype == np.float32, key
            assert np.isfinite(arr).all(), key
            assert arr.shape[1:] == ds.input_shape, key
        elif ds.task == "regression":
            assert arr.dtype == np.float32, key
            assert arr.shape[1:] == (ds.output_dim,), key
        else:
            assert arr.dtype == np.int32, key
            assert arr.min() >= 0 and arr.max() < ds.n_classes, key
    assert ds.n_train == len(ds.x_train) == len(ds.y_train)
    assert len(ds.x_val) == len(ds.y_val) and len(ds.x_test) == len(ds.y_test)
    if ds.task == "binary":
        assert (ds.n_classes, ds.output_dim) == (2, 1)
    elif ds.task == "multiclass":
        assert ds.output_dim == ds.n_classes >= 2
    else:
        assert ds.n_classes == 0
    text = data.describe(ds)
    assert "\n" not in text and name in text and ds.task in text and str(list(ds.x_train.shape)[0]) in text


@pytest.mark.parametrize("name", data.NAMES)
def test_same_seed_same_arrays_other_seed_other_split(name):
    a, b, c = _load(name, seed=3), _load(name, seed=3), _load(name, seed=4)
    for key, arr in _arrays(a).items():
        np.testing.assert_array_equal(arr, _arrays(b)[key], err_msg=key)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


@pytest.mark.parametrize("name", data.NAMES)
def test_split_sizes_follow_fractions(name):
    ds = _load(name, val_fraction=0.1, test_fraction=0.3)
    n = ds.n_train + len(ds.x_val) + len(ds.x_test)
    assert len(ds.x_val) == round(0.1 * n)
    assert len(ds.x_test) == round(0.3 * n)


# --- real data sets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_real_shapes_classes_and_sizes(name):
    size, shape, task, n_classes, output_dim = REAL[name]
    ds = data.load(name)
    assert (ds.input_shape, ds.task, ds.n_classes, ds.output_dim) == (shape, task, n_classes, output_dim)
    assert not ds.sequence_output
    assert ds.n_train + len(ds.y_val) + len(ds.y_test) == size
    for split in SPLITS:
        y = getattr(ds, f"y_{split}")
        assert y.shape == (len(y),)
        assert set(np.unique(y)) == set(range(n_classes)), split  # every class in every split


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "iris"])
@pytest.mark.parametrize("seed", [0, 1])
def test_splits_partition_the_data_with_labels_attached(name, seed):
    """The (features, label) rows of train + val + test are exactly the data set's rows, each once.

    Standardization is a per-feature increasing affine map shared by all splits, so replacing every column
    by the ranks of its distinct values undoes it; the same on the raw data must give the same multiset.
    """
    ds = data.load(name, seed=seed)
    x_raw, y_raw = _raw(name)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).reshape(len(x_raw), -1)
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    ours = _sorted_rows(np.column_stack([_dense_ranks(x), y]))
    theirs = _sorted_rows(np.column_stack([_dense_ranks(x_raw), y_raw]))
    np.testing.assert_array_equal(ours, theirs)


def test_digits_splits_share_no_example():
    ds = data.load("digits", seed=5)  # the raw digits hold no duplicate rows
    rows = {split: {r.tobytes() for r in getattr(ds, f"x_{split}")} for split in SPLITS}
    assert len(rows["train"]) == ds.n_train
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_split_is_stratified(name):
    ds = data.load(name, seed=2)
    _, y_raw = _raw(name)
    overall = np.bincount(y_raw) / len(y_raw)
    for split in SPLITS:
        y = getattr(ds, f"y_{split}")
        share = np.bincount(y, minlength=len(overall)) / len(y)
        np.testing.assert_allclose(share, overall, atol=1.5 / len(y) + 1e-9, err_msg=split)


@pytest.mark.parametrize("seed", [0, 7])
def test_digit_variants_hold_the_same_examples_in_the_same_order(seed):
    flat, image, seq = (data.load(n, seed=seed) for n in ("digits", "digits_image", "digits_sequence"))
    for split in SPLITS:
        x = getattr(flat, f"x_{split}")
        np.testing.assert_array_equal(x.reshape(-1, 8, 8, 1), getattr(image, f"x_{split}"))
        np.testing.assert_array_equal(x.reshape(-1, 8, 8), getattr(seq, f"x_{split}"))
        np.testing.assert_array_equal(getattr(flat, f"y_{split}"), getattr(image, f"y_{split}"))
        np.testing.assert_array_equal(getattr(flat, f"y_{split}"), getattr(seq, f"y_{split}"))
    small = [data.load(n, seed=seed, n_train=40) for n in ("digits", "digits_image", "digits_sequence")]
    np.testing.assert_array_equal(small[0].x_train.reshape(-1, 8, 8, 1), small[1].x_train)
    np.testing.assert_array_equal(small[0].y_train, small[2].y_train)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "iris", "spirals"])
def test_train_features_standardized_with_train_statistics(name):
    ds = _load(name)
    x = ds.x_train.reshape(ds.n_train, -1).astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    varying = std > 0
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-4)
    assert (x[:, ~varying] == 0).all()  # constant columns (border pixels) become 0, not NaN
    # Validation/test were not used for the statistics, so they are not exactly standardized themselves.
    held_out = np.concatenate([ds.x_val, ds.x_test]).reshape(-1, x.shape[1])
    assert np.abs(held_out.mean(axis=0)).max() > 1e-3


def test_digits_constant_pixel_does_not_divide_by_zero():
    ds = data.load("digits", seed=0)
    for split in SPLITS:
        x = getattr(ds, f"x_{split}")
        assert np.isfinite(x).all()
        assert (x[:, 0] == 0).all()  # pixel (0, 0) is blank in every digit
    # A pixel blank in every training digit keeps std 1: held-out values are only shifted (raw pixels are
    # 0..16), not blown up by a tiny std. With seed 0, pixel 56 is such a pixel and is inked in validation.
    constant = ds.x_train.std(axis=0) == 0
    held_out = np.concatenate([ds.x_val, ds.x_test])[:, constant]
    assert np.abs(held_out).max() > 0
    assert np.abs(held_out).max() <= 16


# --- generated data sets ----------------------------------------------------------------------------------


def test_adding_layout_and_target():
    ds = data.load("adding", length=30, n_samples=400, seed=1)
    assert (ds.task, ds.output_dim, ds.n_classes, ds.default_loss) == ("regression", 1, 0, "mse")
    assert not ds.sequence_output
    assert ds.input_shape == (30, 2)
    for split in SPLITS:
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        values, marker = x[..., 0], x[..., 1]
        assert ((values >= 0) & (values < 1)).all()
        assert set(np.unique(marker)) == {0.0, 1.0}
        assert (marker[:, :15].sum(axis=1) == 1).all()  # one marker in the first half
        assert (marker[:, 15:].sum(axis=1) == 1).all()  # one in the second half
        np.testing.assert_allclose(y[:, 0], (values * marker).sum(axis=1), rtol=1e-6)
    assert 0.9 < ds.y_train.mean() < 1.1  # sum of two U[0, 1) values: mean 1
    assert ds.x_train[..., 0].std() > 0.2  # inputs are not standardized: U[0, 1) has std 0.29


def test_adding_length_option_changes_t_and_odd_lengths_split_halves_at_t_over_2():
    assert data.load("adding").input_shape == (50, 2)
    ds = data.load("adding", length=7, n_samples=300)
    assert ds.input_shape == (7, 2)
    marker = ds.x_train[..., 1]
    assert (marker[:, :3].sum(axis=1) == 1).all() and (marker[:, 3:].sum(axis=1) == 1).all()


def test_copy_layout_and_targets():
    length, n_symbols, n_copy = 9, 5, 4
    ds = data.load("copy", length=length, n_symbols=n_symbols, n_copy=n_copy, n_samples=300, seed=2)
    steps = length + 2 * n_copy
    assert (ds.task, ds.n_classes, ds.output_dim) == ("multiclass", n_symbols + 2, n_symbols + 2)
    assert ds.sequence_output and ds.default_loss == "sparse_categorical_crossentropy"
    assert ds.input_shape == (steps, n_symbols + 2)
    for split in SPLITS:
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert y.shape == (len(x), steps)
        np.testing.assert_array_equal(x.sum(axis=-1), 1.0)  # one-hot
        symbols = x.argmax(axis=-1)
        head = symbols[:, :n_copy]
        assert ((head >= 1) & (head <= n_symbols)).all()
        assert (symbols[:, n_copy : n_copy + length - 1] == 0).all()  # T - 1 blanks
        assert (symbols[:, n_copy + length - 1] == n_symbols + 1).all()  # delimiter
        assert (symbols[:, -n_copy:] == 0).all()
        np.testing.assert_array_equal(y[:, -n_copy:], head)  # the copy
        assert (y[:, :-n_copy] == 0).all()  # blank elsewhere
    assert len(np.unique(ds.y_train[:, -n_copy:])) == n_symbols  # every symbol is used


def test_copy_defaults():
    ds = data.load("copy", n_samples=100)
    assert ds.input_shape == (20 + 2 * 10, 8 + 2)
    assert ds.y_train.shape[1] == 40


def test_spirals_shape_balance_and_options():
    ds = data.load("spirals")
    assert (ds.task, ds.input_shape, ds.output_dim) == ("binary", (2,), 1)
    assert ds.n_train + len(ds.y_val) + len(ds.y_test) == 1000
    assert abs(ds.y_train.mean() - 0.5) < 0.02
    quiet = data.load("spirals", noise=0.0, n_samples=200)
    noisy = data.load("spirals", noise=0.5, n_samples=200)
    assert not np.array_equal(quiet.x_train, noisy.x_train)
    assert data.load("spirals", n_samples=200, turns=3.0).n_train == 120


def test_spirals_are_learnable_but_not_linearly_separable():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    ds = data.load("spirals", noise=0.1)
    knn = KNeighborsClassifier(5).fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    linear = LogisticRegression().fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    assert knn > 0.9
    assert linear < 0.75


# --- n_train ----------------------------------------------------------------------------------------------


def test_n_train_subsamples_training_rows_only():
    full = data.load("digits", seed=1)
    small = data.load("digits", seed=1, n_train=100)
    assert small.n_train == 100 and small.y_train.shape == (100,)
    np.testing.assert_array_equal(small.x_val, full.x_val)
    np.testing.assert_array_equal(small.x_test, full.x_test)
    full_rows = {(r.tobytes(), int(y)) for r, y in zip(full.x_train, full.y_train, strict=True)}
    small_rows = {(r.tobytes(), int(y)) for r, y in zip(small.x_train, small.y_train, strict=True)}
    assert len(small_rows) == 100 and small_rows <= full_rows
    assert (np.bincount(small.y_train, minlength=10) == 10).all()  # stratified: 10 of each digit
    again = data.load("digits", seed=1, n_train=100)
    np.testing.assert_array_equal(again.x_train, small.x_train)
    assert data.load("digits", seed=1, n_train=full.n_train).n_train == full.n_train


def test_n_train_on_generated_regression():
    ds = data.load("adding", length=10, n_samples=300, n_train=17)
    assert ds.x_train.shape == (17, 10, 2) and ds.y_train.shape == (17, 1)


# --- errors -----------------------------------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="mnist") as err:
        data.load("mnist")
    for name in data.NAMES:
        assert name in str(err.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="length") as err:
        data.load("digits", length=5)
    assert "digits" in str(err.value)
    with pytest.raises(ValueError, match="n_symbols") as err:
        data.load("adding", n_symbols=3)
    assert "length" in str(err.value) and "n_samples" in str(err.value)


@pytest.mark.parametrize("n_train", [0, -1, 1080, 10**6, 2.5, True])
def test_bad_n_train(n_train):
    with pytest.raises(ValueError, match="n_train"):
        data.load("digits", n_train=n_train)


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction"),
    [(0.0, 0.2), (0.2, 0.0), (-0.1, 0.2), (0.5, 0.5), (0.7, 0.6), (1.0, 0.1)],
)
def test_bad_fractions(val_fraction, test_fraction):
    with pytest.raises(ValueError, match="fraction"):
        data.load("iris", val_fraction=val_fraction, test_fraction=test_fraction)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("adding", {"length": 1}),
        ("adding", {"n_samples": 0}),
        ("copy", {"n_copy": 0}),
        ("copy", {"length": 2.5}),
        ("spirals", {"noise": -0.1}),
        ("spirals", {"turns": 0}),
    ],
)
def test_bad_option_values(name, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        data.load(name, **options)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        data.load("iris", seed=-1)
