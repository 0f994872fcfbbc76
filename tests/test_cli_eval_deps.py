"""`foveal eval` needs SciPy for MATLAB fixation files, never torch or the training extra."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import foveal
from foveal.datasets import _loadmat
from foveal.errors import FovealError

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))


def test_missing_scipy_names_the_eval_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if SciPy were not installed
    with pytest.raises(FovealError, match=r'foveal\[eval\]') as info:
        _loadmat(tmp_path / "fixations.mat")
    assert "train" not in str(info.value)


def test_eval_runs_without_importing_torch(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "fixations.csv").write_text("image,x,y\n0.png,10,10\n0.png,30,20\n1.png,40,30\n")
    code = ("import sys; from foveal.cli import main; "
            f"rc = main(['-q', 'eval', '--dataset', {str(tmp_path)!r}, '--split', 'all', '--model', 'default']); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'eval imported torch'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": FOVEAL_PATH,
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
