"""Keep what you trained (jaxnets.paramfile, jaxnets.saving, Result.save) and predict on raw inputs
(jaxnets.standardize, Result.predict).

The contract: after ``jaxnets sweep CONFIG --out DIR`` or ``Result.save(DIR)``, a NEW process's
``jaxnets.load(DIR).predict(i, x_raw)`` equals the training process's ``Result.predict(i, x_raw)`` for every
variant, and equals applying the saved parameters to the standardized inputs in a plain Flax module read with
safetensors alone; a damaged parameters file is damage (warned, retrained by the sweep), never a crash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxnets
from jaxnets import config, data, engine, paramfile, standardize, store, sweep
from jaxnets.saving import FactoryNeededError, ParamsUnavailableError

TOML = """\
[data]
name = "iris"

[model]
hidden = [8]

[train]
optimizer = "adam"
learning_rate = 0.05
steps = 20
batch_size = 16
eval_every = 10

[sweep]
method = "grid"
mix_architectures = false      # one static group per hidden list (4 groups)

[sweep.axes]
hidden = [[8], [4, 4]]
norm = ["none", "batch"]
activation = ["tanh", "relu"]
seed = [0, 1]
"""


def _iris_raw() -> np.ndarray:
    from sklearn.datasets import load_iris

    return load_iris().data[::10].astype(np.float64)  # 15 raw examples (cm), never standardized


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python process (a new JAX runtime: nothing cached from this one)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A finished CLI sweep: 4 static groups (hidden x norm) of 4 variants each."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "c.toml").write_text(TOML)
    out = folder / "out"
    proc = subprocess.run([sys.executable, "-m", "jaxnets", "sweep", str(folder / "c.toml"), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _predictions_in_a_new_process(out: Path, tmp: Path, model_module: Path | None = None) -> np.ndarray:
    """``jaxnets.load(out).predict(i, x_raw)`` for every variant, computed in a new process: [V, B, ...]."""
    np.save(tmp / "x_raw.npy", _iris_raw() if model_module is None else np.load(tmp / "x_raw.npy"))
    factory = "" if model_module is None else (
        f"import sys; sys.path.insert(0, {str(model_module.parent)!r}); import {model_module.stem} as m; ")
    model = "" if model_module is None else ", model=m.factory"
    _python(f"""
        {factory}import numpy as np, jaxnets
        run = jaxnets.load({str(out)!r}{model})
        x = np.load("x_raw.npy")
        each = np.stack([run.predict(i, x) for i in range(len(run))])
        np.testing.assert_allclose(run.predict_all(x), each, rtol=1e-5, atol=1e-5)
        np.save("pred.npy", each)
    """, tmp)
    return np.load(tmp / "pred.npy")


@pytest.fixture(scope="module")
def swept_predictions(swept, tmp_path_factory) -> np.ndarray:
    """The sweep's predictions on raw iris inputs, computed by a new process from the saved run: [16, 15, 3]."""
    return _predictions_in_a_new_process(swept, tmp_path_factory.mktemp("new_process"))


# ------------------------------------------------------------------------------------------ the sweep's run


def test_a_new_process_predicts_what_the_sweep_trained(swept, swept_predictions):
    """Every variant of a CLI run: the new process's predictions on raw inputs equal those of the same units
    trained in this process (Result.predict on raw inputs), and every unit has its parameters file."""
    cfg = config.load(swept / "config.toml")
    assert sorted(p.name for p in (swept / store.PARAMS).iterdir()) == [f"group-00{k}.safetensors" for k in range(4)]
    loaded = swept_predictions
    x_raw = _iris_raw()
    units = sweep.run(sweep.plan(cfg))
    here = np.empty_like(loaded)
    for unit in units:
        for j, i in enumerate(unit.variant):
            here[i] = unit.trained.predict(j, x_raw)
    assert loaded.shape == (16, len(x_raw), 3)
    np.testing.assert_allclose(loaded, here, rtol=1e-5, atol=1e-5)
    # the raw inputs matter: the same numbers taken as standardized give other outputs
    assert not np.allclose(units[0].trained.predict(0, x_raw, standardized=True), here[units[0].variant[0]],
                           atol=1e-2)


class PlainMLP(nn.Module):
    """The built-in MLP written as a user would, without jaxnets: Dense layers named layer_NN, then output."""

    hidden: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, x):
        for k, width in enumerate(self.hidden):
            x = getattr(nn, self.activation)(nn.Dense(width, name=f"layer_{k:02d}")(x))
        return nn.Dense(3, name="output")(x)


def test_saved_parameters_load_into_a_plain_flax_module_without_jaxnets(swept, swept_predictions):
    """The README's recipe: safetensors + Flax alone give each variant's outputs on standardized inputs,
    equal to jaxnets.load's predictions on the raw inputs."""
    from flax.traverse_util import unflatten_dict
    from safetensors import safe_open

    loaded = swept_predictions
    x_raw = _iris_raw()
    checked = 0
    for path in sorted((swept / "params").glob("*.safetensors")):
        with safe_open(str(path), framework="np") as f:
            groups = json.loads(f.metadata()["jaxnets"])["groups"]
            z = (x_raw - f.get_tensor("data/x_mean")) / f.get_tensor("data/x_std")
            for k, group in enumerate(groups):
                ids = f.get_tensor(f"g{k}/variant")
                for j, row in enumerate(group["rows"]):
                    if row["norm"] != "none":
                        continue
                    params = unflatten_dict({tuple(name.split("/")[2:]): f.get_slice(name)[j]
                                             for name in f.keys() if name.startswith(f"g{k}/params/")})
                    out = PlainMLP(tuple(row["hidden"]), row["activation"]).apply({"params": params},
                                                                                  z.astype(np.float32))
                    np.testing.assert_allclose(out, loaded[ids[j]], rtol=1e-5, atol=1e-5)
                    checked += 1
    assert checked == 8


def test_a_damaged_parameters_file_is_damage_never_a_crash(swept, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(swept, out)
    path = out / "params" / "group-001.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-7] ^= 0x01  # one flipped bit in a parameter
    path.write_bytes(bytes(blob))
    with pytest.warns(paramfile.CorruptParamsWarning, match="group-001.safetensors.*checksum"):
        run = jaxnets.load(out)
    bad = [i for i in range(len(run)) if run.group_of[i] < 0]
    assert len(bad) == 4 and len(run) == 16
    with pytest.raises(ParamsUnavailableError, match=f"variant {bad[0]}: its parameters are unavailable") as e:
        run.predict(bad[0], _iris_raw())
    assert e.value.variant == bad[0]
    with pytest.raises(ParamsUnavailableError):
        run.predict_all(_iris_raw())
    good = next(i for i in range(16) if i not in bad)
    assert run.predict(good, _iris_raw()).shape == (15, 3)
    # resuming the sweep retrains that unit: it is damaged, like a damaged unit file
    with pytest.warns(store.CorruptUnitWarning, match="group-001.safetensors"):
        done = store.open_run(out, (out / "config.toml").read_text())
    assert sorted(done) == ["group-000", "group-002", "group-003"]
    # a missing, truncated or foreign file: the same
    shutil.copy(swept / "params" / "group-001.safetensors", path)
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(p.read_bytes()[:100]),
                   lambda p: p.write_bytes(b"not a safetensors file at all")):
        shutil.copy(swept / "params" / "group-002.safetensors", out / "params" / "group-002.safetensors")
        damage(out / "params" / "group-002.safetensors")
        with pytest.warns(store.CorruptUnitWarning, match="group-002"):
            assert "group-002" not in store.load_units(out)


# ------------------------------------------------------------------------------------------ Result.save


MODELS = '''
import flax.linen as nn

class Residual(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(16)(x)
        h = nn.BatchNorm(use_running_average=not train)(h)
        return nn.Dense(2)(x + nn.Dense(x.shape[-1])(nn.tanh(h)))

def factory(hp):
    return Residual()
'''


def _models(folder: Path):
    """``folder/mymodels.py`` (:data:`MODELS`) written and imported: a factory a new process can import too."""
    import importlib.util

    path = folder / "mymodels.py"
    path.write_text(MODELS)
    spec = importlib.util.spec_from_file_location(f"mymodels_{abs(hash(str(folder)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _regression(seed: int = 0):
    """Raw regression data on scales far from standardized: x ~ N(50, 10) and N(-3, 0.01); y [N, 2]."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.normal(50, 10, 300), rng.normal(-3, 0.01, 300), rng.uniform(0, 1000, 300)], 1)
    y = np.stack([np.sin(x[:, 0] / 10), (x[:, 1] + 3) * 100 + x[:, 2] / 1000], 1)
    return x, y


def test_result_save_then_a_new_process_predicts_with_your_own_model(tmp_path):
    mymodels = _models(tmp_path)
    x, y = _regression()
    ds = data.from_arrays(x, y)
    rows = [{"seed": s, "learning_rate": lr, "steps": 30, "eval_every": 10, "batch_size": 32}
            for s in range(2) for lr in (1e-3, 1e-2)]
    result = engine.train(rows, ds, model=mymodels.factory)
    assert result.model_state(0)["batch_stats"]  # BatchNorm's running statistics are saved too
    result.save(tmp_path / "saved")
    x_new = x[:9] + 1.0
    np.save(tmp_path / "x_raw.npy", x_new)
    loaded = _predictions_in_a_new_process(tmp_path / "saved", tmp_path, tmp_path / "mymodels.py")
    np.testing.assert_allclose(loaded, result.predict_all(x_new), rtol=1e-5, atol=1e-5)
    # without the factory: the parameters, and a clear error for predictions
    run = jaxnets.load(tmp_path / "saved")
    for a, b in zip(jax.tree.leaves(run.params(3)), jax.tree.leaves(result.params(3)), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(FactoryNeededError, match="model=factory") as e:
        run.predict(0, x_new)
    assert e.value.factory == "factory"


def test_search_out_keeps_what_it_trained(tmp_path):
    """jaxnets.search(..., out=DIR) writes a sweep's directory: a new process predicts its variants on raw
    inputs as the returned Result does."""
    if not hasattr(jaxnets, "search"):
        pytest.skip("jaxnets.search is not there yet")
    mymodels = _models(tmp_path)
    x, y = _regression(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # plots of a tiny search
        result = jaxnets.search({"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}, data.from_arrays(x, y),
                                method="random", trials=3, model=mymodels.factory, out=tmp_path / "out",
                                base={"steps": 20, "eval_every": 10, "batch_size": 32}, progress=False)
    x_new = x[:6] * 1.5
    np.save(tmp_path / "x_raw.npy", x_new)
    loaded = _predictions_in_a_new_process(tmp_path / "out", tmp_path, tmp_path / "mymodels.py")
    np.testing.assert_allclose(loaded, result.predict_all(x_new), rtol=1e-5, atol=1e-5)


def test_a_damaged_result_file_leaves_the_parameters_unavailable(tmp_path):
    ds = data.load("iris")
    result = engine.train([{"hidden": [4], "steps": 5, "eval_every": 5, "batch_size": 16}], ds)
    path = result.save(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(paramfile.CorruptParamsWarning, match="result.safetensors"):
        run = jaxnets.load(tmp_path)
    with pytest.raises(ParamsUnavailableError, match="result.safetensors is damaged"):
        run.params(0)
    with pytest.raises(FileNotFoundError, match="holds no saved run"):
        jaxnets.load(tmp_path / "nothing")


def test_a_flipped_bit_anywhere_fails_the_checksum():
    ds = data.load("iris")
    result = engine.train([{"hidden": [4], "steps": 5, "eval_every": 5, "batch_size": 16}], ds)
    blob, digest = paramfile.encode(paramfile.of_groups("result", result.groups, [0]))
    trained, again = paramfile.decode(blob)
    assert again == digest and trained.groups[0].rows[0]["hidden"] == [4]
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(blob), 40, replace=False):
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(rng.integers(8))
        try:
            got, _ = paramfile.decode(bytes(bad))
        except paramfile.CorruptParamsError as e:
            assert "\n" not in str(e)
            continue
        # a flip in JSON whitespace-insensitive places may still decode: then it must be the same content
        assert got.groups[0].rows == trained.groups[0].rows
        for a, b in zip(jax.tree.leaves(got.groups[0].params), jax.tree.leaves(trained.groups[0].params),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_an_nnx_model_with_state_round_trips(tmp_path):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, hp, rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.norm = nnx.BatchNorm(8, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.head = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.head(self.drop(jax.nn.relu(self.norm(self.hidden(x)))))

    def factory(hp, rngs):
        return Net(hp, rngs)

    ds = data.load("iris")
    rows = [{"seed": s, "steps": 10, "eval_every": 5, "batch_size": 16} for s in range(3)]
    result = engine.train(rows, ds, model=factory)
    result.save(tmp_path)
    run = jaxnets.load(tmp_path, model=factory)
    np.testing.assert_allclose(run.predict_all(_iris_raw()), result.predict_all(_iris_raw()), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ raw inputs


def test_predict_takes_raw_inputs_after_from_arrays():
    """from_arrays standardizes x with the training split's statistics; predict applies them to raw inputs:
    equal to the model applied to hand-standardized inputs (and unequal to it on the raw numbers)."""
    x, y = _regression(1)
    ds = data.from_arrays(x[:200], y[:200], x_val=x[200:250], y_val=y[200:250], x_test=x[250:], y_test=y[250:])
    mean, std = x[:200].mean(0), x[:200].std(0)  # the training split is all of x[:200] here
    np.testing.assert_allclose(ds.x_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(ds.x_std, std, rtol=1e-12)
    row = {"hidden": [16], "activation": "tanh", "steps": 50, "eval_every": 25, "batch_size": 32}
    result = engine.train([row], ds)
    x_new = x[250:260]
    want = engine.model(row, ds).apply({"params": result.params(0)}, ((x_new - mean) / std).astype(np.float32))
    np.testing.assert_allclose(result.predict(0, x_new), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.predict_all(x_new)[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.predict(0, ds.x_test[:10], standardized=True), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(result.predict(0, x_new, standardized=True), want, atol=1e-2)
    with pytest.raises(standardize.InputShapeError, match=r"x has shape \[10, 2\]") as e:
        result.predict(0, x_new[:, :2])
    assert e.value.expected == (3,) and e.value.got == (10, 2)


def test_the_dataset_keeps_its_standardization():
    ds = data.load("digits", n_train=100)
    assert ds.x_mean.shape == ds.x_std.shape == (64,) and np.all(ds.x_std > 0)
    image = data.load("digits_image")
    np.testing.assert_allclose(image.x_mean.reshape(-1), data.load("digits").x_mean)
    assert image.x_mean.shape == (8, 8, 1)
    assert data.load("adding", length=10, n_samples=100).x_mean is None  # left as it is
    raw = data.from_arrays(*_regression(), standardize=False)
    assert raw.x_mean is None and raw.x_std is None
    x, y = _regression()
    ds = data.from_arrays(x, y)
    # x_train is exactly the raw training rows standardized with the kept statistics
    rows = [np.flatnonzero(np.all(np.isclose(standardize.apply(x, ds.x_mean, ds.x_std), r), axis=1))
            for r in ds.x_train[:5]]
    assert all(len(r) == 1 for r in rows)
    np.testing.assert_array_equal(standardize.apply(x[[r[0] for r in rows]], ds.x_mean, ds.x_std), ds.x_train[:5])


def test_scaled_regression_targets_are_unscaled_on_the_way_out():
    info = standardize.DataInfo("t", "regression", 0, 2, False, "mse", (3,), (2,), "float32",
                                y_mean=np.array([10.0, -1.0]), y_std=np.array([2.0, 0.5]))
    np.testing.assert_allclose(info.outputs(np.array([[0.0, 0.0], [1.0, 2.0]])), [[10.0, -1.0], [12.0, 0.0]])
    fields, arrays = info.to_json()
    again = standardize.DataInfo.from_json(json.loads(json.dumps(fields)), arrays)
    assert again.input_shape == (3,) and again.label_shape == (2,)
    np.testing.assert_array_equal(again.y_std, info.y_std)


def test_a_unit_saved_without_parameters_says_so(swept, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(swept, out)
    unit = store.load_unit(out / "units" / "group-000.npz")
    shutil.rmtree(out / "params")
    (out / "units" / "group-001.npz").unlink()
    (out / "units" / "group-002.npz").unlink()
    (out / "units" / "group-003.npz").unlink()
    (out / "units" / "group-000.npz").unlink()
    store.save_unit(out, unit)  # as an older jaxnets saved it: metrics only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = jaxnets.load(out)
    with pytest.raises(ParamsUnavailableError, match="saved without parameters"):
        run.params(int(unit.variant[0]))


def test_the_readme_recipes_run(tmp_path, monkeypatch):
    """README "Keep what you trained": raw inputs, save / load, and one variant in a plain Flax module."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("### Keep what you trained")
    section = text[start:text.index("\n## ", start)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    namespace = {"__name__": "__readme__"}
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md:keep-{k}", "exec"), namespace)

