"""include/scripts/gpu_wheels.sh: parts carried one per call are checked, joined and unpacked intact."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "include" / "scripts" / "gpu_wheels.sh"


def _split_parts(tmp_path: Path) -> tuple[dict[str, bytes], Path]:
    """Fake wheels tarred and split the way ``download`` does it; returns them and the parts folder."""
    src = tmp_path / "src" / "whl"
    src.mkdir(parents=True)
    wheels = {f"pkg{k}-1.0-py3-none-any.whl": bytes([k]) * (3000 + 917 * k) for k in range(4)}
    for name, data in wheels.items():
        (src / name).write_bytes(data)
    parts = tmp_path / "parts"
    parts.mkdir()
    subprocess.run(
        f"tar -C {src.parent} -cf - whl | split -b 4K -d -a 2 - {parts}/part-", shell=True, check=True
    )
    subprocess.run("sha256sum part-* > SHA256SUMS", shell=True, check=True, cwd=parts)
    return wheels, parts


def _call(tmp_path: Path, carried: list[Path], verb: str, scratch: Path) -> subprocess.CompletedProcess:
    """One device call: a fresh tree holding the script and only the carried files."""
    tree = tmp_path / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "include" / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, tree / "include" / "scripts" / SCRIPT.name)
    (tree / ".gpu-parts").mkdir()
    for f in carried:
        shutil.copy(f, tree / ".gpu-parts" / f.name)
    return subprocess.run(
        ["bash", str(tree / "include" / "scripts" / SCRIPT.name), verb],
        env={"PATH": "/usr/bin:/bin", "GPU_WHEELS_SCRATCH": str(scratch)},
        capture_output=True,
        text=True,
    )


def test_parts_carried_one_per_call_reassemble_into_the_wheels(tmp_path):
    wheels, parts = _split_parts(tmp_path)
    pieces = sorted(parts.glob("part-*"))
    assert len(pieces) > 3
    scratch = tmp_path / "scratch"
    for piece in pieces[:-1]:
        r = _call(tmp_path, [piece, parts / "SHA256SUMS"], "stash", scratch)
        assert r.returncode == 0, r.stderr
    r = _call(tmp_path, [pieces[-1], parts / "SHA256SUMS"], "assemble", scratch)
    assert r.returncode == 0, r.stderr
    assert f"{len(wheels)} wheel(s) in .whl/" in r.stdout
    got = {p.name: p.read_bytes() for p in (tmp_path / "tree" / ".whl").iterdir()}
    assert {n: hashlib.sha256(b).hexdigest() for n, b in got.items()} == {
        n: hashlib.sha256(b).hexdigest() for n, b in wheels.items()
    }


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_assemble_refuses_a_missing_or_damaged_part(tmp_path, damage):
    _, parts = _split_parts(tmp_path)
    pieces = sorted(parts.glob("part-*"))
    scratch = tmp_path / "scratch"
    kept = pieces[1:] if damage == "missing" else pieces
    if damage == "corrupt":
        pieces[1].write_bytes(b"x" + pieces[1].read_bytes()[1:])
    for piece in kept[:-1]:
        assert _call(tmp_path, [piece, parts / "SHA256SUMS"], "stash", scratch).returncode == 0
    r = _call(tmp_path, [kept[-1], parts / "SHA256SUMS"], "assemble", scratch)
    assert r.returncode != 0
    assert "missing or damaged" in r.stderr
    assert not (tmp_path / "tree" / ".whl").exists()
