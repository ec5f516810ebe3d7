"""Library code and user code: what counts by name and version rather than by its source.

Standard library, built-in and installed (site-packages) modules, and ndustria itself, are
*library* code: a function, class or module of theirs counts by its module, qualified name and
version, never by its source. Everything else (the script, the notebook, the user's own
packages, wherever they live) is *user* code and is fingerprinted by what it is.

Two version rules exist and both are part of stored keys, so neither may change silently:
:func:`package_version` (installed distribution metadata; code fingerprints) and
:func:`module_version` (a module's ``__version__``; library functions hashed inside argument values).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import platform
import site
import sys
from typing import Any

from ndustria.keys.code import enc

PYTHON = "python " + platform.python_version()  # the version token of the standard library and builtins
_MAIN_NAMES = frozenset({"__main__", "__mp_main__"})
_OWN_PACKAGES = frozenset({"ndustria", "ndustria_nb"})


@functools.cache
def library_roots() -> tuple[str, ...]:
    """The folders of library code, real paths ending in a separator: the standard library and its
    extension modules (sysconfig's ``stdlib`` and ``platstdlib``) and installed packages (``purelib``,
    ``platlib``, site's folders). Found without ``sysconfig.get_paths()``, which imports the
    interpreter's build configuration (~2 ms, a fifth of a warm 3,000-task script's fixed cost): the
    standard library is the folder of ``os.py`` (CPython finds its prefix by that landmark) and its
    extension modules' ``lib-dynload`` folder is on ``sys.path``; ``tests/test_fingerprint.py``
    checks these against sysconfig's."""
    stdlib = getattr(os, "__file__", None)  # None in an interpreter whose standard library is frozen in
    if stdlib is None:
        import sysconfig

        paths = sysconfig.get_paths()
        roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    else:
        roots = {os.path.dirname(stdlib)}
    roots.update(os.path.dirname(p) for p in sys.path if os.path.basename(p) == "lib-dynload")
    # sysconfig's platstdlib of a virtual environment: its own lib/pythonX.Y (Lib on Windows)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in (sys.prefix, sys.exec_prefix):
        roots.add(os.path.join(prefix, "Lib") if os.name == "nt" else os.path.join(prefix, sys.platlibdir, version))
    with contextlib.suppress(AttributeError):  # some virtualenvs ship an old site.py
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def _is_library_path(path: str) -> bool:
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return real.startswith(library_roots())


_LIBRARY_CACHE: dict[str, bool] = {}
_STDLIB = frozenset({"builtins", *sys.builtin_module_names, *sys.stdlib_module_names})


def is_library_module(module_name: str) -> bool:
    """True for builtin, stdlib, site-packages modules and ndustria itself; False for user code."""
    if not module_name or module_name in _MAIN_NAMES:
        return False
    hit = _LIBRARY_CACHE.get(module_name)
    if hit is not None:
        return hit
    top = module_name.partition(".")[0]
    if top in _OWN_PACKAGES or top in _STDLIB:
        result = True
    else:
        mod = sys.modules.get(module_name) or sys.modules.get(top)
        paths: list[str] = []
        if mod is not None:
            file = getattr(mod, "__file__", None)
            paths = [file] if file else [p for p in getattr(mod, "__path__", ()) or () if isinstance(p, str)]
        else:
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                located = [spec.origin] if spec.origin and spec.has_location else []
                paths = located or list(spec.submodule_search_locations or ())
        result = bool(paths) and all(_is_library_path(p) for p in paths)
    _LIBRARY_CACHE[module_name] = result
    return result


@functools.cache
def package_version(top: str) -> str:
    """Distribution name and version of a top-level package (python version for the stdlib)."""
    if not top or top in _STDLIB:
        return PYTHON
    import importlib.metadata  # imported when first needed (it costs ~15 ms: email, zipfile, csv, ...)

    try:  # the usual case, a distribution named like its package: no scan of every installed package
        return f"{top} {importlib.metadata.version(top)}"
    except Exception:  # noqa: BLE001 - broken or missing metadata must not break fingerprints
        pass
    candidates: list[str] = []
    with contextlib.suppress(Exception):
        candidates += importlib.metadata.packages_distributions().get(top, [])
    for dist in candidates:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except Exception:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top} {version if isinstance(version, str) else 'unknown'}"


@functools.cache
def library_token(kind: str, module: str, qualname: str) -> bytes:
    return b"".join(map(enc, (kind, module, qualname, package_version(module.partition(".")[0]))))



def module_version(modname: str) -> str:
    """The ``__version__`` of a module or its top-level package ("" when it has none)."""
    for name in (modname, modname.partition(".")[0]):
        version = getattr(sys.modules.get(name), "__version__", None)
        if isinstance(version, str):
            return version
    return ""


def global_name(obj: object) -> str | None:
    """``module\\0qualname`` if ``obj`` is reachable under that name (as pickle would store it)."""
    mod, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    target: object = sys.modules.get(mod)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return f"{mod}\0{qualname}" if target is obj else None


_CONSTANTS: dict[int, tuple[Any, tuple[str, str] | None]] = {}


def library_constant(value: Any) -> tuple[str, str] | None:
    """(module, name) when ``value`` is an instance of a library class bound to a name in that class's
    module (a sentinel such as ``dataclasses.MISSING``), which is how pickle would refer to it."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    if not isinstance(module, str) or not is_library_module(module):
        return None
    hit = _CONSTANTS.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    found = None
    mod = sys.modules.get(module)
    if mod is not None:
        found = next(((module, k) for k, v in vars(mod).items() if v is value), None)
    if len(_CONSTANTS) < 4096:
        _CONSTANTS[id(value)] = (value, found)  # kept alive: an id is never reused for another object
    return found


def clear_caches() -> None:
    """Forget remembered versions and library tokens (after installing packages, or in tests)."""
    package_version.cache_clear()
    library_token.cache_clear()
    _LIBRARY_CACHE.clear()
