"""Generate the Python code for the otv.v1 contracts from `proto/`.

One command (`make protos`) so that generated code is reproducible; the test suite calls
`generate()` into a temporary folder and fails when the committed code differs.
The generated package lives in `src/otv/v1` and is never edited by hand.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "src"
PACKAGE_DIRS = ("otv", "otv/v1")


def _plugin(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    return f"--plugin={name}={found}"


def generate(out_dir: Path = DEFAULT_OUT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs under out_dir; return the files."""
    protos = sorted(p.relative_to(proto_root).as_posix() for p in (proto_root / "otv").rglob("*.proto"))
    target = out_dir / "otv" / "v1"
    if target.exists():
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
    target.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        _plugin("protoc-gen-mypy"),
        _plugin("protoc-gen-mypy_grpc"),
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:  # type: ignore[no-untyped-call]
        raise RuntimeError("protoc failed; see its output above")
    for package in PACKAGE_DIRS:
        init = out_dir / package / "__init__.py"
        init.write_text('"""Generated from proto/ by scripts/generate_protos.py; do not edit."""\n')
    (out_dir / "otv" / "py.typed").write_text("")
    return sorted(p for p in (out_dir / "otv").rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    files = generate(parser.parse_args().out)
    print(f"generated {len(files)} files")


if __name__ == "__main__":
    main()
