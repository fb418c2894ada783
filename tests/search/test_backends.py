"""The study on PostgreSQL (a real server on loopback) and the Ray backend, on the tiny space."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from optuna.trial import TrialState

from carve.search import export_spec, run_search
from carve.search.storage import load_study
from carve.search.spaces import get_space
from carve.zoo import create_model

from .conftest import free_port, tiny_config


def pg_binary(name: str) -> str | None:
    """A PostgreSQL program from the PATH, else from Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1, reverse=True)
    return next((str(d / name) for d in versions if os.access(d / name, os.X_OK)), None)


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    missing = [b for b, path in (("initdb", initdb), ("pg_ctl", pg_ctl), ("runuser", shutil.which("runuser")))
               if path is None]
    if missing:
        pytest.skip(f"PostgreSQL binaries not found on PATH or in /usr/lib/postgresql/*/bin: {missing}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (PostgreSQL driver) not installed")
    if os.geteuid() != 0:
        pytest.skip("starting a server as the postgres user needs root (runuser)")
    root = Path(tempfile.mkdtemp(prefix="carve-pg-"))  # pytest's tmp folders are closed to other users
    data = root / "data"
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres")  # the server writes its log here
    data.mkdir()
    shutil.chown(data, "postgres")
    os.chmod(data, 0o700)
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [initdb, "-D", str(data), "-A", "trust", "-U", "carve"], check=True,
                   capture_output=True)
    port = free_port()
    log = root / "pg.log"
    subprocess.run(as_pg + [pg_ctl, "-D", str(data), "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                            "-l", str(log), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://carve@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_pg + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_binaries_are_found_off_the_path(monkeypatch) -> None:
    """Debian installs PostgreSQL under /usr/lib/postgresql/<version>/bin, off the PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not debian:
        pytest.skip("no PostgreSQL under /usr/lib/postgresql/*/bin (`apt-get install postgresql`)")
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")  # no /usr/local/bin links
    assert shutil.which("initdb") is None
    assert pg_binary("initdb") in {str(p) for p in debian} and pg_binary("pg_ctl").startswith("/usr/lib/postgresql/")


def test_postgres_storage_two_runs_share_the_study(tiny_space, tmp_path, postgres_url):
    cfg = tiny_config(tiny_space, tmp_path, trials=3, storage=postgres_url)
    first = run_search(cfg)
    assert first.storage == postgres_url and first.n_complete == 3
    cfg.resume, cfg.trials, cfg.seed = True, 5, 1  # a second worker (another seed) joins the same study
    second = run_search(cfg)
    assert second.n_complete == 5
    study = load_study(cfg.name, postgres_url)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5
    spec = export_spec(cfg.name, postgres_url, trial=4)
    assert create_model(spec).spec == spec


def test_ray_backend_runs_trials_and_records_them(tiny_space, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    seed = get_space(tiny_space).sample_random(5)[0]
    seed.save(tmp_path / "seed.json")
    cfg = tiny_config(tiny_space, tmp_path, trials=2, backend="ray", cpus_per_trial=2.0, params_budget=3000,
                      warm_start=(str(tmp_path / "seed.json"),))
    try:
        result = run_search(cfg)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    assert result.backend == "ray" and result.n_complete == 2
    study = load_study(cfg.name, cfg.storage_url)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(t.user_attrs["backend"] == "ray" for t in done)
    assert {t.user_attrs["ray_node"]["id"] for t in done} == nodes  # each trial recorded the (one) local node
    assert seed.to_dict() in [t.user_attrs["spec"] for t in done]  # the warm-start point ran
    for t in done:  # constraints recorded the Optuna way, spec recorded and rebuildable from params
        assert t.system_attrs["constraints:params"] == pytest.approx(t.user_attrs["params"] - 3000)
    assert (tmp_path / "ray").is_dir()  # Ray's results under the run folder, not ~/ray_results
    if result.pareto:
        spec = export_spec(cfg.name, cfg.storage_url, trial=result.pareto[0].number)
        assert create_model(spec).spec == spec
