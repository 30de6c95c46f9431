"""CPU-side guards against the bugs that only show on a GPU: a tensor created on the CPU inside
the model while the batch lives on CUDA, or a loaded model that stays on the CPU.

CI has no GPU, so the first kind is caught at the source: every tensor factory in the model,
layer and training code must say where its tensor lives (``device=``) or be marked
``# device: host`` (planning metadata that is meant to stay on the CPU). The graphs in
``pyg_docre/data`` are built on the host by design and are moved with ``data.to(device)``, and
so is the encoder's window plan (:data:`HOST_MODULES`), moved with ``WindowPlan.to(device)``.
"""
import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("pyg_docre/nn", "pyg_docre/models", "pyg_docre/training", "pyg_docre/metrics")
FACTORIES = {"tensor", "as_tensor", "zeros", "ones", "empty", "full", "arange", "linspace",
             "eye", "rand", "randn", "randint", "randperm"}
MARK = "# device: host"
#: Modules that build host-side plans by design (every tensor in them lives on the CPU).
HOST_MODULES = ("pyg_docre/nn/window_plan.py",)


def _unplaced_factories(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in FACTORIES and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)):
            span = lines[node.lineno - 1:(node.end_lineno or node.lineno)]
            if not any(MARK in line for line in span):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: torch.{node.func.attr}")
    return found


def test_tensor_factories_name_their_device():
    files = [p for d in CHECKED for p in sorted((ROOT / d).rglob("*.py"))
             if p.relative_to(ROOT).as_posix() not in HOST_MODULES]
    assert files
    unplaced = [hit for p in files for hit in _unplaced_factories(p)]
    assert not unplaced, ("tensors created without device= (they land on the CPU when the "
                          "batch is on CUDA); pass device=, or mark host-side metadata with "
                          f"'{MARK}':\n" + "\n".join(unplaced))


def test_the_guard_catches_an_unplaced_tensor(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nx = torch.arange(3)\ny = torch.zeros(2, device=x.device)\n"
                   "z = torch.ones(1)  # device: host\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert _unplaced_factories(bad) == ["bad.py:2: torch.arange"]
    finally:
        ROOT = saved

