"""ncf_tf's modules import in one direction: train (the entry: cheap checks, then TensorFlow) -> trainer ->
artifacts, ... Nothing imports train back (the import circle issue 15 names), checked on the source so that it
runs without TensorFlow."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ncf_tf"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (node.module or "") if node.level == 0 else "ncf_tf" + (f".{node.module}" if node.module else "")
            names.add(base)
            if node.module is None:  # from . import a, b
                names.update(f"ncf_tf.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_the_training_entry_back():
    importers = [p.name for p in SOURCE.glob("*.py") if p.name != "train.py" and "ncf_tf.train" in imported_modules(p)]
    assert importers == []


def test_the_checkpoint_and_export_helpers_live_below_both_entry_modules():
    assert "ncf_tf.artifacts" in imported_modules(SOURCE / "trainer.py")
    assert "ncf_tf.trainer" in imported_modules(SOURCE / "train.py")
