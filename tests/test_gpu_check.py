"""bench/gpu_check.sh, as far as a machine without a GPU can check it: its arguments and its wheel
folder (`--dry-run`), each refusal one line and exit 2."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
WHEELS = ["hydra_core-1.3.8", "omegaconf-2.3.1", "antlr4_python3_runtime-4.9.3", "hydra_joblib_launcher-1.2.0"]


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def wheel_folder(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for name in names:
        with zipfile.ZipFile(root / f"{name}-py3-none-any.whl", "w") as z:
            z.writestr(f"{name}.dist-info/METADATA", "Name: x\n")
    return root


def test_dry_run_accepts_a_complete_wheel_folder(tmp_path):
    p = check("--dry-run", "--wheels", str(wheel_folder(tmp_path / "w", WHEELS)), "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok: wheels in ") and all(n in p.stdout for n in WHEELS)
    assert (tmp_path / "o").is_dir() and not any((tmp_path / "o").iterdir())  # nothing run, nothing written


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "has no hydra_joblib_launcher wheel; allowed: a folder made by bench/gpu_check.sh --prepare"),
        (
            "two versions",
            "has 2 omegaconf wheels (omegaconf-2.3.1-py3-none-any.whl omegaconf-2.4.0-py3-none-any.whl); keep one",
        ),
        ("not a zip", "is not a wheel (not a zip file)"),
        ("no folder", "is not a folder; allowed: a folder made by --prepare"),
        ("unknown argument", "unknown argument '--fast'; usage: bench/gpu_check.sh"),
        ("bad device", "--device tpu is not allowed; allowed: cuda, cpu"),
        ("no wheels given", "no wheel folder given; usage:"),
    ],
)
def test_dry_run_refuses_in_one_line(tmp_path, case, message):
    names = {"missing": WHEELS[:3], "two versions": WHEELS + ["omegaconf-2.4.0"]}.get(case, WHEELS)
    folder = wheel_folder(tmp_path / "w", names)
    if case == "not a zip":
        (folder / "hydra_core-1.3.8-py3-none-any.whl").write_text("not a zip")
    args = {
        "no folder": ["--dry-run", "--wheels", str(tmp_path / "nope")],
        "unknown argument": ["--fast"],
        "bad device": ["--dry-run", "--device", "tpu"],
        "no wheels given": ["--dry-run"],
    }
    p = check(*args.get(case, ["--dry-run", "--wheels", str(folder)]))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
