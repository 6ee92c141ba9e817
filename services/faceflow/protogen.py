"""Regenerate the Python code for ``protos/`` into ``services/faceflow/v1`` (``make protos``).

The generated modules are committed so that a plain ``pip install`` needs no code generator; a test
(``tests/test_protogen.py``) regenerates into a temporary folder and fails when the committed code
is stale. The generator is pinned (grpcio-tools and mypy-protobuf in the ``dev`` extra) so the
output is reproducible byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "protos"
OUT_ROOT = REPO / "services"
PACKAGE_DIR = Path("faceflow") / "v1"

_INIT = (
    '"""Generated protobuf and gRPC code for the faceflow.v1 wire contract (see protos/). Do not edit."""\n'
)


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpcio-tools) for every proto into ``out_root``; return the files written."""
    from grpc_tools import protoc  # noqa: PLC0415 - dev-only dependency

    include = Path(protoc.__file__).parent / "_proto"
    target = out_root / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    (target / "__init__.py").write_text(_INIT)
    return sorted(p for p in target.iterdir() if p.is_file())


def stale_files() -> list[str]:
    """Files whose committed content differs from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed_dir = OUT_ROOT / PACKAGE_DIR
        fresh_names = {p.name for p in fresh}
        committed_names = {p.name for p in committed_dir.glob("*") if p.is_file()}
        diffs = sorted(committed_names ^ fresh_names)
        for path in fresh:
            other = committed_dir / path.name
            if other.exists() and not filecmp.cmp(path, other, shallow=False):
                diffs.append(path.name)
        return sorted(set(diffs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("generated code is stale, run `make protos`: " + ", ".join(stale), file=sys.stderr)  # noqa: T201
            return 1
        print("generated code is up to date")  # noqa: T201
        return 0
    target = OUT_ROOT / PACKAGE_DIR
    for old in target.glob("*"):
        if old.is_file():
            old.unlink()
        elif old.name == "__pycache__":
            shutil.rmtree(old)
    written = generate(OUT_ROOT)
    print(f"wrote {len(written)} files into {target}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
