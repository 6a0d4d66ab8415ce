"""Generated protobuf code is never edited by hand: regenerating it must not change it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_protobuf_code_changes_nothing(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    protos = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "proto").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", "--python_out=.", "--pyi_out=.",
         "--grpc_python_out=.", *protos],
        cwd=tmp_path, check=True,
    )
    generated = sorted(p for p in (tmp_path / "tollway" / "pb").iterdir() if p.suffix in {".py", ".pyi"})
    assert generated, "protoc generated nothing"
    for path in generated:
        committed = ROOT / "tollway" / "pb" / path.name
        assert committed.exists(), f"{path.name} is generated but not committed"
        assert committed.read_text() == path.read_text(), f"tollway/pb/{path.name} differs from generated code"
