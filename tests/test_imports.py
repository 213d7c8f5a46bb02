"""Dependencies point one way: data -> models / metrics -> training -> cli / experiments."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "hepattn"

# For each package: the hepattn packages and third-party frameworks it must never import.
# The shared layers never import an experiment or the benchmark: an experiment builds on them, not the
# other way round.
EXPERIMENTS = ["hepattn.experiments", "hepattn.bench"]
FORBIDDEN = {
    "data": ["hepattn.models", "hepattn.metrics", "hepattn.training", "hepattn.cli", *EXPERIMENTS],
    "models": [
        "lightning",
        "pytorch_lightning",
        "hepattn.metrics",
        "hepattn.training",
        "hepattn.cli",
        *EXPERIMENTS,
    ],
    "metrics": ["lightning", "hepattn.models", "hepattn.training", "hepattn.cli", *EXPERIMENTS],
    "training": ["hepattn.cli", *EXPERIMENTS],
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package):
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert not offenders, offenders


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_shared_layers_never_name_an_experiment(package):
    # the text, not only the imports: no string config, class path or lazy import points at an experiment
    pattern = re.compile(r"hepattn\.(experiments|bench)")
    offenders = [
        str(p.relative_to(SRC))
        for p in sorted((SRC / package).rglob("*.py"))
        if pattern.search(p.read_text())
    ]
    assert not offenders, offenders


def test_files_stay_small():
    too_long = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if len(p.read_text().splitlines()) > 420]
    assert not too_long, f"split these by meaning: {too_long}"


def test_the_checker_sees_imports():
    # guards against a vacuous pass: the parser must find this file's own imports
    assert {"ast", "pathlib", "pytest"} <= imported_modules(Path(__file__))
