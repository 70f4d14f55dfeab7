"""qjm is a proper wheel: ``python -m build`` makes one that ships its type marker and its data, it
installs into a clean virtualenv, and ``qjm demo`` runs from there (its own worker, a private Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .procs import ROOT, RedisServer


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"python -m build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (built,) = out.glob("qjm-*.whl")
    return built


def test_wheel_ships_types_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "qjm/py.typed" in names
    assert any(n.startswith("qjm/store/scripts/") and n.endswith(".lua") for n in names), "Lua scripts missing"
    assert "workers/app.py" in names, "the Celery app the workers load is missing"
    assert not any(n.startswith(("tests/", "docs/", "tools/", "bench/")) for n in names)


def test_wheel_installs_into_a_clean_venv_and_runs_the_demo(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)  # no system site-packages, nothing of ours
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QJM_", "VIRTUAL_ENV"))}
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=1800, env=clean, cwd=tmp_path)
    assert done.returncode == 0, f"pip install of the wheel failed:\n{done.stderr[-3000:]}"
    where = subprocess.run([str(python), "-c", "import qjm, workers; print(qjm.__file__, workers.__file__)"],
                           capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=300)
    assert str(env_dir) in where.stdout and str(ROOT) not in where.stdout, where.stdout + where.stderr
    redis = RedisServer().start()
    try:
        demo = subprocess.run([str(env_dir / "bin" / "qjm"), "demo"], capture_output=True, text=True, timeout=1800,
                              env={**clean, "QJM_REDIS_URL": redis.url, "PATH": f"{env_dir / 'bin'}:{clean.get('PATH', '')}"},
                              cwd=tmp_path)
    finally:
        redis.stop()
    assert demo.returncode == 0, f"qjm demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}"
    assert "started worker" in demo.stdout and "started redis-server" not in demo.stdout, demo.stdout[:2000]
    assert "1000 circuits in 10 jobs on fake_manila" in demo.stdout
    assert "results.get_counts(5) = {" in demo.stdout
    assert "DONE" in demo.stdout
