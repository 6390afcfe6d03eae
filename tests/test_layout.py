"""The package's floors (docs/development.md, "Layout"): a module imports only from its
own floor or the ones below, function-level imports included, so no import runs back up."""

import ast
from pathlib import Path

import esjax

PACKAGE = Path(esjax.__file__).parent
FLOORS = [
    ("errors", "quiet"),  # imports nothing of esjax
    ("core",),
    ("config", "option_checks", "option_values", "parsing", "cpu_bits", "provenance", "presets"),
    ("rollout",),
    ("run",),
    ("trainer",),
    ("train", "evaluate", "export", "plot", "seeds", "cli"),
]


def floor(module: str) -> int:
    """The floor of ``esjax.X...`` (by its first part below ``esjax``)."""
    part = module.split(".")[1]
    return next(i for i, names in enumerate(FLOORS) if part in names)


def esjax_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("esjax."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("esjax.")}
    return found


def test_every_module_has_a_floor_and_imports_only_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module == "esjax.__init__":
            continue  # the public API re-exports from several floors
        mine = floor(module.removesuffix(".__init__") if "." in module else module)
        for imported in esjax_imports(path):
            if floor(imported) > mine:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_no_module_passes_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert long == {}
