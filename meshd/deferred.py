"""Deferred imports: a module is a placeholder until a name taken from it is used.

The mechanism behind :mod:`meshd.gossip.lean_imports` (py-libp2p) and
:mod:`meshd.wg.lean_pyroute2` (pyroute2), which say what they defer and why. Within
:func:`deferring`, an import of a listed module (or a submodule) gives a placeholder; a name
taken from it while deferring is a stand-in that imports the real module the moment it is
called or an attribute is read from it (an attribute read while deferring, as a module-level
table of constructors does, is itself looked up when it is called); ``isinstance`` against a
stand-in whose module never ran is False without loading it. A class listed as built on use
(:func:`import_lean`) gives, when called before its module ran, an object that makes the
real instance the first time an attribute of it is read. Outside :func:`deferring`, a name
taken from a placeholder is the real one, loaded then; a submodule imported by name while
its package is a placeholder runs under the real package, loaded first; a deferred module
loaded for real is imported with the other deferred modules still deferred, as at the first
import (its own imports of them get placeholders). An ``except`` clause naming a
stand-in catches only the stand-in (Python matches exception classes by type), and a
stand-in cannot be subclassed: never defer a module whose exceptions or classes are used
that way on a path that runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "DEFERRED",
    "deferred_loaded",
    "deferring",
    "import_lean",
    "imported_lean",
    "is_placeholder",
]

log = logging.getLogger(__name__)

_lock = threading.RLock()
_released: set[str] = set()  # deferred modules whose real import is under way or done
_loaded: dict[str, str] = {}  # deferred modules loaded for real -> the name that needed it
_deferring_now = False
_stand_ins: dict[tuple[str, str], type] = {}  # (module, name) -> the stand-in given out
_lean: set[str] = set()  # packages imported by import_lean, with their deferrals
_built_on_use: dict[str, str] = {}  # "module.Class" -> why its instances are built when used


DEFERRED: dict[str, str] = {}
"""Every module deferred so far (and its submodules) -> why (see :func:`defer`)."""


def _deferred_root(name: str) -> str | None:
    for root in DEFERRED:
        if name == root or name.startswith(root + "."):
            return root
    return None


class _StandInMeta(type):
    """The type of a stand-in: using it imports the real module and forwards."""

    _module: str
    _attr: str

    def _real(cls) -> Any:
        return getattr(_load(cls._module, cls._attr), cls._attr)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if f"{cls._module}.{cls._attr}" in _built_on_use and cls._module not in _loaded:
            return _LazyInstance(cls, args, kwargs)
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if _deferring_now and cls._module not in _loaded:
            # Read while the deferred import runs (a table of constructors at module level):
            # the attribute is looked up when it is used.
            return _LazyAttribute(cls, name)
        return getattr(cls._real(), name)

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls._module not in _loaded:
            return False  # nothing can be an instance of a class whose module never ran
        real = cls._real()
        return isinstance(real, type) and isinstance(instance, real)

    def __subclasscheck__(cls, subclass: Any) -> bool:
        if cls._module not in _loaded:
            return subclass is cls
        real = cls._real()
        return isinstance(real, type) and issubclass(subclass, real)

    def __repr__(cls) -> str:
        return f"<deferred {cls._module}.{cls._attr}>"


class _LazyAttribute:
    """An attribute of a stand-in read during the deferred import: calling it (or reading
    an attribute of it) imports the stand-in's module and forwards to the real attribute."""

    __slots__ = ("_name", "_owner")

    def __init__(self, owner: _StandInMeta, name: str) -> None:
        self._owner = owner
        self._name = name

    def _real(self) -> Any:
        return getattr(self._owner._real(), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._real(), name)

    def __repr__(self) -> str:
        return f"<deferred {self._owner._module}.{self._owner._attr}.{self._name}>"


class _LazyInstance:
    """An instance of a class listed as built on use (:func:`import_lean`'s ``built_on_use``),
    made while its module is still deferred: the real instance is made (its module imported)
    the first time an attribute of it is read."""

    __slots__ = ("_args", "_class", "_kwargs", "_made")

    def __init__(self, cls: _StandInMeta, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._class = cls
        self._args = args
        self._kwargs = kwargs
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if self._made is None:
            with _lock:
                if self._made is None:
                    self._made = self._class._real()(*self._args, **self._kwargs)
        return getattr(self._made, name)

    def __repr__(self) -> str:
        return f"<{self._class._module}.{self._class._attr}, made when used>"


class _StandIn(Exception, metaclass=_StandInMeta):
    """Base of the stand-ins (an Exception, so that naming one in ``except`` is allowed)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "_module" not in cls.__dict__:
            raise ImportError(
                f"{cls.__qualname__} subclasses a deferred py-libp2p name: "
                "remove its module from the deferred ones (meshd.deferred.DEFERRED)"
            )
        super().__init_subclass__(**kwargs)


class _DeferredModule(types.ModuleType):
    """A placeholder for a deferred module: its names are stand-ins."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        real = sys.modules.get(self.__name__)
        if real is not None and real is not self:
            return getattr(real, name)
        if not _deferring_now:
            # Asked for after the deferred import (by other code): the real thing, at once.
            return getattr(_load(self.__name__, name), name)
        # Kept aside, not on the module: so that a later import of the name gets the real one.
        key = (self.__name__, name)
        stand_in = _stand_ins.get(key)
        if stand_in is None:
            stand_in = _StandInMeta(name, (_StandIn,), {"_module": self.__name__, "_attr": name})
            _stand_ins[key] = stand_in
        return stand_in


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        root = _deferred_root(fullname)
        if root is None:
            return None
        if not _deferring_now:
            return self._after_deferral(fullname, root)
        if root in _released:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:
            return None  # not there: let the import fail as it would
        spec = importlib.machinery.ModuleSpec(
            fullname, self, is_package=real.submodule_search_locations is not None
        )
        spec.submodule_search_locations = real.submodule_search_locations
        return spec

    @staticmethod
    def _after_deferral(fullname: str, root: str) -> importlib.machinery.ModuleSpec | None:
        """An import by name, after the deferral, of a module of a deferred tree that is not
        in ``sys.modules`` (a placeholder there is what the import gets, as before). If its
        package is still a placeholder, the real package is loaded first: the submodule must
        not run under a placeholder, and the package's own import, set off halfway through
        the submodule by a name read from the package, would import the submodule again (a
        circular import, or the submodule run twice). Then the usual finders find it."""
        parent = fullname.rpartition(".")[0]
        if isinstance(sys.modules.get(parent), _DeferredModule):
            _load(parent, fullname)
            loaded = sys.modules.get(fullname)
            if loaded is not None and loaded.__spec__ is not None:
                # The package's import imported it: this import is given that module.
                return _already(loaded.__spec__)
        if root not in _released:
            _released.add(root)
            _note_loaded(fullname, "an import of it")
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _DeferredModule(spec.name)
        if spec.submodule_search_locations is not None:
            module.__path__ = list(spec.submodule_search_locations)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_FINDER = _Finder()


class _Already(importlib.abc.Loader):
    """The loader of a module that was imported while the import system looked for it: the
    import gets that module as it is (its own spec given back), nothing runs again."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        self._spec = spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return sys.modules[self._spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set ours on it: its own back


def _already(spec: importlib.machinery.ModuleSpec) -> importlib.machinery.ModuleSpec:
    return importlib.machinery.ModuleSpec(spec.name, _Already(spec), origin=spec.origin)


def _note_loaded(module: str, needed: str) -> None:
    if module not in _loaded:
        _loaded[module] = needed
        log.info("%s, deferred when py-libp2p was imported, is loaded now (for %s)", module, needed)


def _load(module: str, attr: str) -> types.ModuleType:
    """Import the real ``module`` (deferred until now) and return it."""
    with _lock:
        current = sys.modules.get(module)
        if current is not None and not isinstance(current, _DeferredModule):
            return current
        _note_loaded(module, attr)
        root = _deferred_root(module) or module
        _released.add(root)
        # The placeholders of this tree make way for the real modules.
        for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
            if isinstance(sys.modules[name], _DeferredModule):
                del sys.modules[name]
        # Its own imports of other deferred modules are deferred, as at the first import.
        with _deferring():
            real = importlib.import_module(module)
        parent, _, child = module.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, real)
        return real


@contextmanager
def deferring(modules: dict[str, str]) -> Iterator[None]:
    """Within the block, imports of ``modules`` (and their submodules) are deferred."""
    DEFERRED.update(modules)
    with _deferring():
        yield


@contextmanager
def _deferring() -> Iterator[None]:
    global _deferring_now
    if _FINDER not in sys.meta_path:
        # It stays after the deferral for imports by name of deferred modules that are
        # not listed (:meth:`_Finder._after_deferral`).
        sys.meta_path.insert(0, _FINDER)
    was = _deferring_now
    _deferring_now = True
    try:
        yield
    finally:
        _deferring_now = was


def import_lean(
    package: str,
    deferred: dict[str, str],
    modules: Sequence[str] = (),
    built_on_use: dict[str, str] | None = None,
) -> bool:
    """Import ``package`` (then ``modules``) with ``deferred`` deferred; True if the import
    was lean. Idempotent; False (and nothing deferred) when ``package`` was imported before.
    A failed import leaves none of the package's modules behind.

    ``built_on_use`` names classes of deferred modules (``"module.Class"``, as the deferred
    module's importers name them) whose instances are made when first used: calling the
    stand-in gives an object that makes the real instance, and imports its module, the
    first time one of its attributes is read (``isinstance`` does not see it as one)."""
    with _lock:
        if package in sys.modules:
            return package in _lean
        _built_on_use.update(built_on_use or {})
        try:
            with deferring(deferred):
                importlib.import_module(package)
                for name in modules:
                    importlib.import_module(name)
        except BaseException:
            for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                del sys.modules[name]
            raise
        _lean.add(package)
        return True


def imported_lean(package: str) -> bool:
    """Whether ``package`` was imported by :func:`import_lean`, with its deferrals."""
    return package in _lean


def is_placeholder(module: object) -> bool:
    """Whether ``module`` is a deferred module's placeholder (its real one not loaded)."""
    return isinstance(module, _DeferredModule)


def deferred_loaded() -> dict[str, str]:
    """The deferred modules that were loaded after all -> the name that needed each."""
    return dict(_loaded)
