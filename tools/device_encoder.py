#!/usr/bin/env python
"""Write a float16 copy of the embedded MiniLM-L6 encoder for a machine without pip.

    python tools/device_encoder.py [.device/encoder]

The copy holds the package's model folder with ``model.safetensors`` in float16 (45 MB instead
of 90 MB, so that it travels with a checkout) and ``"torch_dtype": "float32"`` in
``config.json``, so that it loads as float32 (every float16 value is exact in float32; the
weights differ from the package's by the float16 rounding). Point the library at it with
``PYG_DOCRE_EMBEDDED_ENCODER=.device/encoder`` (``pyg_docre.pretrained``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from safetensors.torch import load_file, save_file

    from pyg_docre.pretrained import EMBEDDED_ENCODER, resolve_pretrained

    out = Path(argv[0] if argv else ".device/encoder")
    source = Path(resolve_pretrained(EMBEDDED_ENCODER))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in weights.items()}, str(tmp / "model.safetensors"))
    config = json.loads((tmp / "config.json").read_text())
    config["torch_dtype"] = "float32"
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2 ** 20
    print(f"{out}: float16 copy of {source} ({size:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
