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


# --- your own data: from_arrays -------------------------------------------------------------------------


def _blobs(n: int = 200, d: int = 3, n_classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features [n, d] (float64, shifted by class) and int labels [n] cycling 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    return rng.normal(size=(n, d)) + y[:, None], y


def _data_error(fn, *args, **kwargs) -> data.DataError:
    with pytest.raises(data.DataError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)  # one line each
    return info.value


def test_from_arrays_infers_binary_multiclass_and_regression():
    x, y = _blobs()
    ds = data.from_arrays(x, y)
    assert (ds.task, ds.n_classes, ds.output_dim, ds.default_loss) == ("binary", 2, 1, "binary_crossentropy")
    assert ds.name == "arrays" and not ds.sequence_output
    assert data.from_arrays(x, y.astype(bool)).task == "binary"
    x3, y3 = _blobs(n_classes=3)
    ds = data.from_arrays(x3, y3.astype(np.uint8), name="three")
    assert (ds.name, ds.task, ds.n_classes, ds.output_dim) == ("three", "multiclass", 3, 3)
    assert ds.default_loss == "sparse_categorical_crossentropy"
    ds = data.from_arrays(x, x[:, 0] * 0.5 + 0.1)
    assert (ds.task, ds.n_classes, ds.output_dim, ds.default_loss) == ("regression", 0, 1, "mse")
    assert ds.y_train.shape == (ds.n_train, 1) and ds.y_val.shape == (ds.n_val, 1)  # [N] -> [N, 1]
    ds = data.from_arrays(x, x[:, :2] + 0.5)
    assert ds.output_dim == 2 and ds.y_test.shape == (ds.n_test, 2)
    # an explicit task wins: integer targets as regression, whole-number floats as classes
    assert data.from_arrays(x, y * 3, task="regression").task == "regression"
    assert data.from_arrays(x3, y3.astype(np.float64), task="multiclass").n_classes == 3
    assert data.from_arrays(x, y.astype(np.float32), task="binary").y_train.dtype == np.int32
    assert data.from_arrays(x, y, task="multiclass").output_dim == 2
    assert data.from_arrays(x, y[:, None]).y_train.shape == (120,)  # [N, 1] labels are flattened


@pytest.mark.parametrize("shape", [(90, 5), (90, 4, 4, 2), (90, 6, 3)])
def test_from_arrays_dtypes_shapes_and_contiguity(shape):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 9, size=shape)  # integer features become float32
    y = np.arange(90) % 3
    ds = data.from_arrays(x, y)
    assert ds.input_shape == shape[1:]
    for key, arr in _arrays(ds).items():
        assert arr.flags.c_contiguous, key
        assert arr.dtype == (np.float32 if key.startswith("x") else np.int32), key
    assert (ds.n_train, ds.n_val, ds.n_test) == (54, 18, 18)
    assert "arrays: multiclass, 3 classes" in data.describe(ds)


def test_from_arrays_splits_like_the_built_in_sets():
    """Raw iris through from_arrays gives exactly data.load("iris"): same splitter, same standardization."""
    x_raw, y_raw = _raw("iris")
    for seed in (0, 3):
        ours, theirs = data.from_arrays(x_raw, y_raw, seed=seed), data.load("iris", seed=seed)
        for key, arr in _arrays(theirs).items():
            np.testing.assert_array_equal(_arrays(ours)[key], arr, err_msg=key)
        assert (ours.task, ours.n_classes, ours.output_dim) == (theirs.task, theirs.n_classes, theirs.output_dim)


def test_from_arrays_is_deterministic_for_a_seed():
    x, y = _blobs()
    a, b, c = (data.from_arrays(x, y, seed=s) for s in (5, 5, 6))
    for key, arr in _arrays(a).items():
        np.testing.assert_array_equal(arr, _arrays(b)[key], err_msg=key)
    assert not np.array_equal(a.x_test, c.x_test)


def test_from_arrays_split_sizes_follow_fractions():
    x, y = _blobs(n=101)
    ds = data.from_arrays(x, y, val_fraction=0.1, test_fraction=0.3)
    assert (ds.n_val, ds.n_test, ds.n_train) == (round(10.1), round(30.3), 101 - 10 - 30)
    rows = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    assert len({r.tobytes() for r in rows}) == 101  # a partition: every example once


def test_from_arrays_split_is_stratified():
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.3).astype(int)
    ds = data.from_arrays(rng.normal(size=(300, 2)), y, seed=4)
    overall = np.bincount(y) / len(y)
    for split in SPLITS:
        labels = getattr(ds, f"y_{split}")
        share = np.bincount(labels, minlength=2) / len(labels)
        np.testing.assert_allclose(share, overall, atol=1.5 / len(labels) + 1e-9, err_msg=split)


def test_from_arrays_uses_given_validation_and_test_splits():
    x, y = _blobs(n=100, n_classes=3)
    xv, yv = _blobs(n=30, n_classes=3, seed=1)
    xt, yt = _blobs(n=20, n_classes=3, seed=2)
    # validation given, test split off the training arrays (test_fraction of x)
    ds = data.from_arrays(x, y, x_val=xv, y_val=yv, test_fraction=0.25, standardize=False)
    np.testing.assert_array_equal(ds.x_val, xv.astype(np.float32))
    np.testing.assert_array_equal(ds.y_val, yv)
    assert (ds.n_train, ds.n_val, ds.n_test) == (75, 30, 25)
    split_off = {r.tobytes() for r in np.concatenate([ds.x_train, ds.x_test])}
    assert split_off == {r.tobytes() for r in x.astype(np.float32)}
    # test given, validation split off
    ds = data.from_arrays(x, y, x_test=xt, y_test=yt, val_fraction=0.1, standardize=False)
    np.testing.assert_array_equal(ds.x_test, xt.astype(np.float32))
    assert (ds.n_train, ds.n_val, ds.n_test) == (90, 10, 20)
    # both given: all of x, y trains (shuffled by the seed), the given splits are used as they are
    ds = data.from_arrays(x, y, x_val=xv, y_val=yv, x_test=xt, y_test=yt, standardize=False)
    assert (ds.n_train, ds.n_val, ds.n_test) == (100, 30, 20)
    order = np.lexsort(ds.x_train.T)
    np.testing.assert_array_equal(ds.x_train[order], x.astype(np.float32)[np.lexsort(x.astype(np.float32).T)])
    np.testing.assert_array_equal(ds.y_test, yt)
    # a class that only a given split holds cannot be learned: refused, naming the split (issue 29)
    with pytest.raises(data.DataError, match="y_val holds the label.s. 2, which the training labels"):
        data.from_arrays(x[y < 2], y[y < 2], x_val=xv, y_val=yv)


def test_from_arrays_standardizes_with_training_statistics_only():
    rng = np.random.default_rng(3)
    x = rng.normal(loc=[5.0, -2.0, 0.0], scale=[3.0, 0.5, 1.0], size=(120, 3))
    x[:, 2] = 7.0  # a constant feature: std 1, becomes 0
    y = np.arange(120) % 2
    xv = rng.normal(loc=10.0, size=(40, 3))  # validation far from the training data
    raw = data.from_arrays(x, y, x_val=xv, y_val=np.arange(40) % 2, seed=1, standardize=False)
    ds = data.from_arrays(x, y, x_val=xv, y_val=np.arange(40) % 2, seed=1)
    train = raw.x_train.astype(np.float64)  # the same split, not standardized
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    for split in SPLITS:
        expected = (getattr(raw, f"x_{split}").astype(np.float64) - mean) / std
        np.testing.assert_allclose(getattr(ds, f"x_{split}"), expected, rtol=1e-5, atol=1e-5, err_msg=split)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, :2].std(axis=0), 1.0, atol=1e-4)
    assert (ds.x_train[:, 2] == 0).all()
    assert ds.x_val[:, 0].mean() > 1.0  # held-out data is not standardized with its own statistics


# --- your own data: load_file (CSV, NPZ) ----------------------------------------------------------------


def _write_csv(path, header: list[str], rows: list[list]) -> None:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_csv_round_trip_matches_from_arrays(tmp_path):
    x, y = _blobs(n=90, d=3, n_classes=3)
    path = tmp_path / "blobs.csv"
    # the label column need not be last; floats written with repr read back exactly
    _write_csv(path, ["f0", "label", "f1", "f2"], [[repr(float(r[0])), int(c), repr(float(r[1])), repr(float(r[2]))]
                                                  for r, c in zip(x, y, strict=True)])
    ds = data.load_file(path, target="label", seed=2, val_fraction=0.3)
    ref = data.from_arrays(x, y, seed=2, val_fraction=0.3, name="blobs")
    assert ds.name == "blobs" and ds.task == "multiclass" and ds.n_classes == 3
    for key, arr in _arrays(ref).items():
        np.testing.assert_array_equal(_arrays(ds)[key], arr, err_msg=key)
    assert data.load_file(str(path), target="label", name="mine").name == "mine"


def test_csv_regression_and_whitespace_bom_blank_lines(tmp_path):
    path = tmp_path / "houses.csv"
    rows = [f" {i}, {i % 7}.5 ,{0.25 * i}" for i in range(40)]
    path.write_text("\ufeffrooms ,age, price\n" + "\n".join(rows[:20]) + "\n\n" + "\n".join(rows[20:]) + "\n")
    ds = data.load_file(path, target="price", standardize=False)
    assert (ds.task, ds.output_dim, ds.input_shape) == ("regression", 1, (2,))
    assert ds.n_train + ds.n_val + ds.n_test == 40 and ds.y_train.shape == (ds.n_train, 1)
    np.testing.assert_allclose(ds.y_train[:, 0], 0.25 * ds.x_train[:, 0])


def test_csv_class_names_become_sorted_ids(tmp_path):
    path = tmp_path / "flowers.csv"
    names = ["virginica", "setosa", "versicolor"]
    _write_csv(path, ["a", "b", "species"], [[i, i % 5, names[i % 3]] for i in range(60)])
    ds = data.load_file(path, target="species", standardize=False)
    assert (ds.task, ds.n_classes) == ("multiclass", 3)
    # sorted names: setosa 0, versicolor 1, virginica 2
    for split in SPLITS:
        a = getattr(ds, f"x_{split}")[:, 0].astype(int)
        np.testing.assert_array_equal(getattr(ds, f"y_{split}"), [sorted(names).index(names[i % 3]) for i in a])
    two = tmp_path / "two.csv"
    _write_csv(two, ["a", "diagnosis"], [[i, ("benign", "malignant")[i % 2]] for i in range(20)])
    ds = data.load_file(two, target="diagnosis", standardize=False)
    assert ds.task == "binary"
    np.testing.assert_array_equal(ds.y_train, ds.x_train[:, 0].astype(int) % 2)


def test_npz_round_trip_with_given_splits(tmp_path):
    x, y = _blobs(n=80)
    xv, yv = _blobs(n=16, seed=1)
    path = tmp_path / "arrays.npz"
    np.savez(path, x=x, y=y, x_val=xv, y_val=yv)
    ds = data.load_file(path, seed=1)
    ref = data.from_arrays(x, y, x_val=xv, y_val=yv, seed=1, name="arrays")
    assert ds.name == "arrays" and (ds.n_val, ds.n_test) == (16, 16)
    for key, arr in _arrays(ref).items():
        np.testing.assert_array_equal(_arrays(ds)[key], arr, err_msg=key)
    images = tmp_path / "images.npz"
    np.savez(images, x=np.random.default_rng(0).random((50, 4, 4, 1)), y=np.arange(50) % 5)
    ds = data.load_file(images, task="multiclass")
    assert ds.input_shape == (4, 4, 1) and ds.n_classes == 5


# --- your own data: bad data, one line each -----------------------------------------------------------


def test_task_inference_errors_say_what_to_pass():
    x, y = _blobs(n_classes=3)
    err = _data_error(data.from_arrays, x, y.astype(np.float64))
    for part in ("whole numbers", "0.0, 1.0, 2.0", 'task="multiclass"', 'task="regression"', "integers"):
        assert part in str(err), part
    err = _data_error(data.from_arrays, x, y + 1)  # labels 1..3
    for part in ("1, 2, 3", "not 0..2", "np.unique", 'task="regression"'):
        assert part in str(err), part
    err = _data_error(data.from_arrays, x, np.where(y == 0, -1, 1))
    assert "-1, 1" in str(err) and "not 0..1" in str(err)
    err = _data_error(data.from_arrays, x, y, task="binary")
    assert 'task="binary" needs 2 classes' in str(err) and 'task="multiclass"' in str(err)
    err = _data_error(data.from_arrays, x, x[:, 0], task="binary")
    assert "whole-number class labels" in str(err) and "y[0]" in str(err)
    with pytest.raises(ValueError, match="task must be one of binary, multiclass, regression"):
        data.from_arrays(x, y, task="classification")


ARRAY_ERRORS = [
    # (changes to the good arguments, substrings the message must contain, the field column)
    ({"y": np.zeros(200, int)}, ["one class only", "(0)", "at least 2 classes"], "y"),
    ({"y": np.arange(199) % 2}, ["x has 200 rows", "y has 199 rows"], "y"),
    ({"y_val": np.arange(10) % 2}, ["y_val given without x_val"], "y_val"),
    ({"x_test": np.zeros((10, 3))}, ["x_test given without y_test"], "x_test"),
    ({"x_val": np.zeros((10, 3)), "y_val": np.arange(9) % 2}, ["x_val has 10 rows", "y_val has 9"], "y_val"),
    ({"x_val": np.zeros((10, 4)), "y_val": np.arange(10) % 2}, ["x_val examples have shape [4]", "[3]"], "x_val"),
    ({"x": np.zeros(200)}, ["x has shape [200]", "[N, D]", "reshape(-1, 1)"], "x"),
    ({"x": np.array([["1", "a", "2"]] * 200)}, ["x is not numeric", "x[0]", "'1'"], "x"),
    ({"y": np.array(["cat", "dog"] * 100)}, ["y is not numeric", "y[0] holds 'cat'", "np.unique"], "y"),
    ({"x": np.zeros((0, 3)), "y": np.zeros(0, int)}, ["x is empty"], "x"),
    ({"x_val": np.zeros((10, 3)), "y_val": np.arange(10) % 2 + 2},  # shifted labels: not a 4-class problem
     ["y_val holds the label(s) 2, 3", "training labels (y: 0, 1) never have"], "y_val"),
    ({"x_test": np.zeros((10, 3)), "y_test": np.arange(10) % 3}, ["y_test holds the label(s) 2"], "y_test"),
]


@pytest.mark.parametrize(("change", "expected", "column"), ARRAY_ERRORS)
def test_from_arrays_bad_data_messages(change, expected, column):
    x, y = _blobs()
    err = _data_error(data.from_arrays, **{"x": x, "y": y, **change})
    for part in expected:
        assert part in str(err), f"{part!r} not in {str(err)!r}"
    assert isinstance(err, ValueError) and err.column == column and err.source is None


def test_from_arrays_nan_and_inf_give_count_and_array():
    x, y = _blobs()
    x[[5, 9, 9], [0, 1, 2]] = [np.nan, np.inf, -np.inf]
    err = _data_error(data.from_arrays, x, y)
    assert "x has 3 NaN / Inf value(s)" in str(err) and "x[5]" in str(err)
    assert (err.column, err.row) == ("x", 5)
    xv, yv = _blobs(n=10)
    y_val = np.where(np.arange(10) == 4, np.nan, 0.5)
    err = _data_error(data.from_arrays, *_blobs(), x_val=xv, y_val=y_val, task="regression")
    assert "y_val has 1 NaN / Inf value(s)" in str(err) and "y_val[4]" in str(err)


def test_from_arrays_split_that_would_be_empty():
    x, y = _blobs(n=4)
    with pytest.raises(data.DataError, match="x has 4 examples.*leave a split empty"):
        data.from_arrays(x, y, val_fraction=0.1)
    with pytest.raises(ValueError, match="val_fraction"):
        data.from_arrays(*_blobs(), val_fraction=1.5)
    with pytest.raises(ValueError, match="below 1"):
        data.from_arrays(*_blobs(), val_fraction=0.5, test_fraction=0.5)
    xv, yv = _blobs(n=10)
    data.from_arrays(*_blobs(), x_val=xv, y_val=yv, val_fraction=5.0)  # ignored: validation is given


def test_load_file_missing_file_and_unknown_suffix(tmp_path):
    err = _data_error(data.load_file, tmp_path / "nope.csv", target="y")
    assert "nope.csv: no such file" in str(err) and err.source == str(tmp_path / "nope.csv")
    (tmp_path / "data.txt").write_text("a,b\n1,2\n")
    err = _data_error(data.load_file, tmp_path / "data.txt")
    assert "data.txt" in str(err) and "'.txt'" in str(err) and ".csv" in str(err) and ".npz" in str(err)
    err = _data_error(data.load_file, tmp_path / "noext")
    assert "(no suffix)" in str(err)
    assert data.FILE_SUFFIXES == (".csv", ".npz")
    with pytest.raises(TypeError, match="'targets'"):
        data.load_file(tmp_path / "data.csv", targets="y")


CSV_ERRORS = [
    # (file text, target, substrings the message must contain, (column, row) fields)
    ("a,b,label\n1,2,0\n3,4,1\n", None, ["needs target=", "columns: 'a', 'b', 'label'"], (None, None)),
    ("a,b,label\n1,2,0\n3,4,1\n", "y", ["no column 'y'", "columns: 'a', 'b', 'label'"], ("y", None)),
    ("1,2,0\n3,4,1\n", "label", ["no column 'label'", "looks like data", "header row"], ("label", None)),
    ("a,b,label\n1,2,0\n3,x7,1\n5,6,0\n", "label", ["column 'b' is not numeric", "row 2 (line 3)", "'x7'"],
     ("b", 2)),
    ("a,b,label\n1,2,0\n3,4,1\n5,6,cat\n", "label", ["column 'label' mixes numbers and text", "row 3", "'cat'"],
     ("label", 3)),
    ("a,b,label\n1,,0\n3,nan,1\n5,6,0\ninf,1,1\n", "label",
     ["3 missing / NaN / Inf value(s)", "'a' 1 (first in row 4, line 5)", "'b' 2 (first in row 1, line 2)"],
     ("a", 4)),
    ("a,b,label\n1,2,0\n3,4\n", "label", ["row 2 (line 3) has 2 field(s)", "header has 3"], (None, 2)),
    ("a,a,label\n1,2,0\n", "label", ["column 'a' appears twice"], ("a", None)),
    ("a,b,label\n", "label", ["no data rows"], (None, None)),
    ("", "label", ["the file is empty", "header row"], (None, None)),
    ("label\n0\n1\n", "label", ["no feature columns"], (None, None)),
    ("a,b,label\n1,2,3\n3,4,3\n5,6,3\n", "label", ["column 'label' holds one class only", "(3)"], ("label", None)),
    ("a,b,label\n1,2,0\n3,4,2\n5,6,0\n", "label", ["column 'label' holds the labels 0, 2", "not 0..1"],
     ("label", None)),
    ("a,label\n1,0.0\n2,1.0\n3,0.0\n", "label", ["column 'label' holds only whole numbers", 'task="multiclass"'],
     ("label", None)),
]


@pytest.mark.parametrize(("text", "target", "expected", "fields"), CSV_ERRORS)
def test_load_file_bad_csv_messages(tmp_path, text, target, expected, fields):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    err = _data_error(data.load_file, path, target=target)
    assert str(err).startswith(f"{path}: ") and err.source == str(path)
    for part in expected:
        assert part in str(err), f"{part!r} not in {str(err)!r}"
    assert (err.column, err.row) == fields


def test_load_file_csv_text_labels_with_regression_task(tmp_path):
    path = tmp_path / "names.csv"
    _write_csv(path, ["a", "label"], [[i, "yes" if i % 2 else "no"] for i in range(10)])
    err = _data_error(data.load_file, path, target="label", task="regression")
    assert "column 'label' is not numeric" in str(err) and "'no'" in str(err) and "row 1" in str(err)
    fractional = tmp_path / "fractional.csv"
    fractional.write_text("a,label\n1,0\n2,1.5\n3,1\n")
    err = _data_error(data.load_file, fractional, target="label", task="binary")
    assert 'task="binary" needs whole-number class labels' in str(err) and "row 2, 1.5" in str(err)
    assert (err.column, err.row) == ("label", 2)


NPZ_ERRORS = [
    ({"x": np.zeros((10, 2))}, {}, ["no array 'y'", "holds 'x'"], "y"),
    ({"X": np.zeros((10, 2)), "Y": np.arange(10) % 2}, {}, ["unknown array(s) 'X', 'Y'", "x, y"], "X"),
    ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2}, {"target": "y"}, ["target='y'", "CSV files only"], None),
    ({"x": np.ones((10, 2)), "y": np.arange(10) % 2, "y_val": np.arange(4) % 2}, {},
     ["y_val given without x_val"], "y_val"),
    ({"x": np.ones((10, 2)), "y": np.arange(9) % 2}, {}, ["x has 10 rows but y has 9 rows"], "y"),
    ({"x": np.full((10, 2), np.nan), "y": np.arange(10) % 2}, {}, ["x has 20 NaN / Inf value(s)"], "x"),
    ({"x": np.ones((10, 2)), "y": np.arange(10) % 2, "x_val": np.ones((3, 2)), "y_val": np.arange(3) % 2},
     {"x_val": np.ones((3, 2)), "y_val": np.arange(3) % 2}, ["x_val, y_val are both in the file and passed"], "x_val"),
]


@pytest.mark.parametrize(("arrays", "options", "expected", "column"), NPZ_ERRORS)
def test_load_file_bad_npz_messages(tmp_path, arrays, options, expected, column):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    err = _data_error(data.load_file, path, **options)
    assert str(err).startswith(f"{path}: ")
    for part in expected:
        assert part in str(err), f"{part!r} not in {str(err)!r}"
    if column is not None:
        assert err.column == column


def test_load_file_npz_that_is_not_an_archive(tmp_path):
    fake = tmp_path / "fake.npz"
    fake.write_text("a,b\n1,2\n")
    assert "not a readable .npz archive" in str(_data_error(data.load_file, fake))
    single = tmp_path / "single.npz"
    with single.open("wb") as f:
        np.save(f, np.zeros(3))
    assert "single array (.npy)" in str(_data_error(data.load_file, single))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4) % 2)
    err = _data_error(data.load_file, objects)
    assert "'x'" in str(err) and "pickle" in str(err)
