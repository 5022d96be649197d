"""Compile once per machine: JAX's persistent compilation cache in a private per-user directory.

:func:`enable` points JAX's persistent compilation cache (``jax_compilation_cache_dir``) at a directory and
lowers JAX's thresholds (``jax_persistent_cache_min_compile_time_secs = 0``,
``jax_persistent_cache_min_entry_size_bytes = -1``) so that every program is written, the small ones of a
CPU run too. A second process that compiles the same program (same code, shapes, devices and JAX version)
then loads the executable from disk instead of compiling it: a rerun of the same sweep skips the
compilation that dominates a short run.

The default directory is ``$XDG_CACHE_HOME/jaxnets/jax`` (``~/.cache/jaxnets/jax`` when ``XDG_CACHE_HOME``
is unset or not absolute), created owner-only (mode ``0o700``). A compilation cache holds executable
code that JAX runs without checking it, so a directory that another user could write to is refused
(:class:`UnsafeCacheDirError`): one owned by another user, or writable by group or others.

The ``jaxnets sweep`` and ``jaxnets demo`` commands call :func:`enable_from_env` before training:
``JAXNETS_COMPILE_CACHE=0`` (or ``--no-compile-cache``) turns the cache off, ``JAXNETS_COMPILE_CACHE=DIR``
picks the directory. In Python, nothing is cached unless you call :func:`enable` yourself. JAX's own
switch ``jax_enable_compilation_cache=False`` (``JAX_ENABLE_COMPILATION_CACHE=false``) still wins.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "JAXNETS_COMPILE_CACHE"
"""Environment variable read by :func:`enable_from_env`: unset, empty, ``1``, ``true``, ``on`` or ``yes``:
the default directory; ``0``, ``false``, ``off`` or ``no``: off; anything else: the cache directory."""

_OFF = frozenset({"0", "false", "off", "no"})
_DEFAULT = frozenset({"", "1", "true", "on", "yes"})
_MODE = 0o700


class UnsafeCacheDirError(PermissionError):
    """The cache directory cannot be used safely: another user owns it or may write to it, or it is not a
    directory. The message is one line and says what to do."""


def default_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user default cache directory: ``$XDG_CACHE_HOME/jaxnets/jax``, else ``~/.cache/jaxnets/jax``.

    Args:
      environ: the environment to read ``XDG_CACHE_HOME`` and ``HOME`` from (default ``os.environ``).

    Returns:
      The directory (not created). A relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says.

    Example::

        >>> default_dir({"XDG_CACHE_HOME": "/var/cache/me"}).as_posix()
        '/var/cache/me/jaxnets/jax'
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME")
        base = (Path(home) if home else Path.home()) / ".cache"
    return base / "jaxnets" / "jax"


def _refuse(path: Path, why: str, fix: str = "") -> UnsafeCacheDirError:
    return UnsafeCacheDirError(
        f"compilation cache directory {str(path)!r} {why}; a compilation cache is trusted code, so it must be "
        f"a directory only you can write to ({fix}pick another directory with {ENV_VAR}=DIR, or turn the "
        f"cache off with {ENV_VAR}=0 or --no-compile-cache)")


def _check(path: Path) -> None:
    """Raise :class:`UnsafeCacheDirError` unless ``path`` is a directory owned by this user that neither
    group nor others may write to."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise _refuse(path, f"cannot be read ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise _refuse(path, f"is owned by another user (uid {st.st_uid}, you are {os.getuid()})")
    if sys.platform != "win32" and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(path, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):#o})",
                      f"run `chmod go-w {path}`, ")


def _make(path: Path) -> None:
    """Create ``path`` and its missing parents, each owner-only (``0o700``, whatever the umask)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=_MODE)
        except FileExistsError:  # created meanwhile by a concurrent run; checked below like any other
            continue
        except OSError as e:
            raise _refuse(path, f"cannot be created ({e.strerror})") from None
        os.chmod(d, _MODE)


def enable(path: str | os.PathLike[str] | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` for every later compilation of this process.

    The directory is created owner-only (mode ``0o700``, parents too) if it does not exist. An existing
    one must be a directory owned by this user and not writable by group or others. Then
    ``jax_compilation_cache_dir`` is set to it, with ``jax_persistent_cache_min_compile_time_secs = 0`` and
    ``jax_persistent_cache_min_entry_size_bytes = -1`` so that every program is cached, however small or
    quick to compile. Calling it again with another directory switches to that one. A cached program is the
    program that would be compiled: results never depend on the cache.

    Args:
      path: the cache directory; ``~`` is expanded. ``None``: :func:`default_dir`.

    Returns:
      The absolute cache directory.

    Raises:
      UnsafeCacheDirError: the directory is owned by another user, writable by group or others, not a
        directory, or cannot be created.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    target = Path(path).expanduser() if path is not None else default_dir()
    target = target.absolute()
    if not target.exists():
        _make(target)
    _check(target)
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax_cache.reset_cache()  # JAX opens its cache once per process: make it (re)open at `target`
    return target


def disable() -> None:
    """Turn the persistent compilation cache off again for later compilations of this process (what was
    written stays on disk); JAX's thresholds go back to their defaults."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax_cache.reset_cache()


def enable_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """:func:`enable` as :data:`ENV_VAR` says: the default directory, a directory of its own, or off.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      The cache directory, or ``None`` when the variable turns the cache off (nothing is changed then).

    Raises:
      UnsafeCacheDirError: as :func:`enable`.
    """
    target = dir_from_env(environ)
    return None if target is None else enable(target)


def dir_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The cache directory :data:`ENV_VAR` names (nothing is created or enabled): :func:`default_dir` when it
    is unset or says on, its own directory (``~`` not expanded), or ``None`` when it turns the cache off.

    Args:
      environ: the environment to read (default ``os.environ``).

    Example::

        >>> dir_from_env({"JAXNETS_COMPILE_CACHE": "0"}) is None
        True
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "").strip()
    if value.lower() in _OFF:
        return None
    return default_dir(env) if value.lower() in _DEFAULT else Path(value)
