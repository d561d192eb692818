"""Every name a public package or module lists in `__all__` exists (a rename cannot leave a stale export),
and the public packages do declare one."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ["trustchain", "trustchain.ct", "trustchain.dns", "trustchain.crypto", "sim", "reference_node"]


@pytest.mark.parametrize("name", PACKAGES)
def test_public_package_declares_and_resolves_its_api(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert [n for n in exported if not hasattr(package, n)] == []


@pytest.mark.parametrize("name", ["trustchain.ct", "trustchain.dns", "trustchain.crypto"])
def test_every_module_of_the_package_lists_existing_names(name: str) -> None:
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__, name + "."):
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported, f"{info.name} has no __all__"
        assert [n for n in exported if not hasattr(module, n)] == [], info.name
