"""jaxnets.compilation_cache: a private per-user cache directory, refused when others could write to it, and a
second process that compiles the same program reads what the first one wrote.

No test here asserts a time: whether a cached load is faster depends on the machine.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from jaxnets import compilation_cache

_KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def restore_jax_config():
    """enable() changes process-wide JAX settings: put them back, so later tests compile without a cache."""
    before = {k: getattr(jax.config, k) for k in _KEYS}
    yield
    for k, v in before.items():
        jax.config.update(k, v)
    jax_cache.reset_cache()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_enable_creates_an_owner_only_directory(tmp_path, restore_jax_config):
    target = tmp_path / "cache" / "jax"
    got = compilation_cache.enable(target)
    assert got == target and got.is_absolute() and got.is_dir()
    assert _mode(target) == 0o700 and _mode(target.parent) == 0o700  # created parents are private too
    assert jax.config.jax_compilation_cache_dir == str(target)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    assert compilation_cache.enable(target) == target  # an existing private directory is fine
    compilation_cache.disable()
    assert jax.config.jax_compilation_cache_dir is None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_directory_others_can_write_to_is_refused(tmp_path, restore_jax_config):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(compilation_cache.UnsafeCacheDirError, match="writable by group or others") as err:
        compilation_cache.enable(shared)
    message = str(err.value)
    assert "\n" not in message and str(shared) in message and "0o777" in message
    assert "JAXNETS_COMPILE_CACHE=0" in message and "--no-compile-cache" in message
    assert jax.config.jax_compilation_cache_dir != str(shared)
    os.chmod(shared, 0o770)  # group-writable is refused too
    with pytest.raises(compilation_cache.UnsafeCacheDirError):
        compilation_cache.enable(shared)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners")
def test_a_directory_of_another_user_or_a_file_is_refused(tmp_path, monkeypatch, restore_jax_config):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    owner = os.stat(mine).st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    with pytest.raises(compilation_cache.UnsafeCacheDirError, match="owned by another user"):
        compilation_cache.enable(mine)
    monkeypatch.undo()
    (tmp_path / "file").write_text("x")
    with pytest.raises(compilation_cache.UnsafeCacheDirError, match="is not a directory"):
        compilation_cache.enable(tmp_path / "file")


def test_default_directory_and_the_environment_variable(tmp_path, monkeypatch, restore_jax_config):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert compilation_cache.default_dir(env) == tmp_path / "xdg" / "jaxnets" / "jax"
    assert compilation_cache.default_dir({"XDG_CACHE_HOME": "relative", "HOME": str(tmp_path / "home")}) == (
        tmp_path / "home" / ".cache" / "jaxnets" / "jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.enable() == tmp_path / "xdg" / "jaxnets" / "jax"
    assert compilation_cache.enable_from_env(env) == tmp_path / "xdg" / "jaxnets" / "jax"
    assert compilation_cache.enable_from_env({**env, "JAXNETS_COMPILE_CACHE": str(tmp_path / "mine")}) == (
        tmp_path / "mine")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert compilation_cache.enable_from_env({**env, "JAXNETS_COMPILE_CACHE": "0"}) is None
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")  # "0" changes nothing


_PROGRAM = textwrap.dedent("""
    import sys

    import jax
    import jax.numpy as jnp

    from jaxnets import compilation_cache

    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **_: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
    compilation_cache.enable(sys.argv[1])
    f = jax.jit(lambda w, x: jnp.tanh(x @ w).sum(axis=1))
    out = f(jnp.ones((3, 4), jnp.float32), jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3))
    print(out.tolist(), len(hits))
""")


def _run(cache: Path) -> tuple[list[float], int]:
    proc = subprocess.run([sys.executable, "-c", _PROGRAM, str(cache)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    values, hits = proc.stdout.strip().rsplit(" ", 1)
    return eval(values), int(hits)  # noqa: S307 - our own program's print of a list of floats


def test_a_second_process_reads_what_the_first_one_wrote(tmp_path):
    cache = tmp_path / "cache"
    first, hits_first = _run(cache)
    entries = sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache"))
    assert entries, f"no cache entries written in {cache}: {sorted(os.listdir(cache))}"
    assert hits_first == 0 and _mode(cache) == 0o700
    second, hits_second = _run(cache)
    assert second == first
    assert hits_second >= 1  # the program came from the cache ...
    assert sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache")) == entries  # ... and wrote nothing new


# ------------------------------------------------------------------------------------------ the jaxnets command

_TINY_TOML = """\
[data]
name = "iris"

[model]
hidden = [4]

[train]
optimizer = "sgd"
learning_rate = 0.1
steps = 4
batch_size = 16
eval_every = 2

[sweep]
method = "grid"

[sweep.axes]
seed = [0, 1]
"""


def test_the_command_has_a_switch_to_turn_the_cache_off():
    from jaxnets import cli

    parser = cli.build_parser()
    assert parser.parse_args(["demo", "--no-compile-cache"]).no_compile_cache
    assert not parser.parse_args(["sweep", "c.toml", "--out", "o"]).no_compile_cache


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_the_command_refuses_an_unsafe_cache_directory_before_training(tmp_path, monkeypatch, capsys,
                                                                       restore_jax_config):
    from jaxnets import cli

    config = tmp_path / "tiny.toml"
    config.write_text(_TINY_TOML)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("JAXNETS_COMPILE_CACHE", str(shared))
    assert cli.main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxnets: error: compilation cache directory") and "0o777" in err[0]
    assert not list(shared.iterdir()) and not (tmp_path / "out" / "results.csv").exists()


def test_a_sweep_writes_its_programs_into_the_cache(tmp_path):
    """`jaxnets sweep` as a user runs it: cache on by default (here in JAXNETS_COMPILE_CACHE), off with
    --no-compile-cache (JAXNETS_COMPILE_CACHE=0 is enable_from_env's, tested above)."""
    config = tmp_path / "tiny.toml"
    config.write_text(_TINY_TOML)
    cache = tmp_path / "cache"

    def sweep(out: str, *flags: str) -> None:
        env = {**os.environ, "JAXNETS_COMPILE_CACHE": str(cache)}
        proc = subprocess.run([sys.executable, "-m", "jaxnets", "sweep", str(config), "--out", str(tmp_path / out),
                               "--quiet", *flags], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]

    sweep("off", "--no-compile-cache")
    assert not cache.exists()
    sweep("on")
    assert _mode(cache) == 0o700 and any(p.name.endswith("-cache") for p in cache.iterdir())
