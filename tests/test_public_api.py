"""The package's public names: ``__all__``, ``from unillm import *``, and what type checkers see."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import unillm
from unillm import errors

INIT = Path(unillm.__file__)


def test_all_is_the_lazy_names_and_the_errors() -> None:
    assert len(unillm.__all__) == len(set(unillm.__all__))
    assert set(unillm.__all__) == set(unillm._LAZY) | set(errors.__all__)


def test_star_import_gives_exactly_the_public_names_and_each_resolves() -> None:
    code = ("import json\nns = {}\nexec('from unillm import *', ns)\n"
            "print(json.dumps({k: f'{v.__module__}.{v.__qualname__}' for k, v in ns.items() "
            "if k != '__builtins__'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names = json.loads(out.stdout)
    assert sorted(names) == sorted(unillm.__all__)
    for name, where in names.items():
        module = unillm._LAZY.get(name, "unillm.errors")
        assert where == f"{module}.{name}"
        assert getattr(unillm, name) is getattr(sys.modules[module] if module in sys.modules
                                                else __import__(module, fromlist=[name]), name)


def test_type_checkers_see_every_public_name() -> None:
    """Each name of ``__all__`` is imported under ``if TYPE_CHECKING:``, so a checker knows
    its type although at run time ``__getattr__`` loads it lazily."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    imported = {alias.asname or alias.name for node in block.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert "*" not in imported
    assert imported == set(unillm.__all__)


def test_the_package_is_marked_typed() -> None:
    assert (INIT.parent / "py.typed").is_file()
