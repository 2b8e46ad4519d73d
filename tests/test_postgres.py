"""The production instance against a real PostgreSQL on 127.0.0.1: `initdb` and the server run as an
unprivileged user in a data folder the test owns (and stops); a work folder initialized with
`docker/dagster.yaml` itself, its environment variables pointed at that server; `medtrinity run` on the
demo's smallest source; runs and materializations read back through the instance; the work folder's
shared writes serialized by Postgres advisory locks, with two shards racing for one image."""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.ui_check import free_port

from .conftest import EXAMPLES
from .test_concurrency import _normalize_shard

REPO = Path(__file__).resolve().parents[1]
MEDTRINITY = str(Path(sys.executable).parent / "medtrinity")
USER, PASSWORD, DB = "medtrinity", "pg-test-secret", "dagster"


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed (`make test` installs the Debian package postgresql)")
    return found[-1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of the test's own, password-protected, on a free port of 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="medtrinity-pg-"))  # under /tmp: pytest's folders are closed to other users
    data, pwfile, log = root / "data", root / "pwfile", root / "server.log"
    pwfile.write_text(PASSWORD)
    as_user = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: run them as nobody
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        os.chown(pwfile, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
    os.chmod(root, 0o700)
    port = free_port()

    def run(args):
        return subprocess.run(args, check=True, capture_output=True, text=True, cwd=root, **as_user)

    run([pg_bin("initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"])
    run([pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
         "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100"])
    env = {"PGPASSWORD": PASSWORD}
    subprocess.run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB], check=True, env={**os.environ, **env})
    try:
        yield {"port": port, "env": {"DAGSTER_PG_USERNAME": USER, "DAGSTER_PG_PASSWORD": PASSWORD, "DAGSTER_PG_HOST": "127.0.0.1",
                                     "DAGSTER_PG_DB": DB, "DAGSTER_PG_PORT": str(port)}}
    finally:
        subprocess.run([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, cwd=root, **as_user, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def pg_env(postgres, monkeypatch):
    for k, v in postgres["env"].items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **postgres["env"]}


def test_a_work_folder_on_the_postgres_instance_runs_the_demos_smallest_source(pg_env, tmp_path):
    import psycopg2

    wd = tmp_path / "wd"
    init = subprocess.run([MEDTRINITY, "init", "--workdir", str(wd), "--instance", str(REPO / "docker" / "dagster.yaml")],
                          env=pg_env, capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stderr
    assert (wd / "dagster" / "dagster.yaml").read_text() == (REPO / "docker" / "dagster.yaml").read_text()
    run = subprocess.run([MEDTRINITY, "run", "--workdir", str(wd), "--sources", str(EXAMPLES / "sources.yaml"), "--source", "drive", "--no-progress"],
                         env=pg_env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (wd / "dagster" / "dagster.yaml").read_text() == (REPO / "docker" / "dagster.yaml").read_text()  # the command kept it
    assert not (wd / "dagster" / "history").exists() and not list((wd / "dagster").glob("**/*.db"))  # nothing went to SQLite

    import dagster as dg
    from dagster import DagsterRunStatus
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    with dg.DagsterInstance.from_config(str(wd / "dagster")) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage) and isinstance(instance.event_log_storage, PostgresEventLogStorage)
        runs = instance.get_runs()
        assert len(runs) == 2 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}  # the knowledge base, drive's shard
        assert {r.tags.get("medtrinity/source") for r in runs} == {None, "drive"}
        event = instance.get_latest_materialization_event(dg.AssetKey(["drive", "triplets"]))
        assert event is not None and event.dagster_event.partition == "base-0000"
        assert event.asset_materialization.metadata["rows"].value == 1
    with psycopg2.connect(host="127.0.0.1", port=pg_env["DAGSTER_PG_PORT"], user=USER, password=PASSWORD, dbname=DB) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 2
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] >= 7  # the knowledge base and drive's six stages


def test_an_instance_file_with_an_unset_variable_is_refused_with_one_line(tmp_path, pg_env):
    env = {k: v for k, v in pg_env.items() if k != "DAGSTER_PG_PASSWORD"}
    result = subprocess.run([MEDTRINITY, "init", "--workdir", str(tmp_path / "wd"), "--instance", str(REPO / "docker" / "dagster.yaml")],
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "DAGSTER_PG_PASSWORD" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_on_postgres_the_work_folders_locks_are_advisory_locks_that_exclude_other_sessions(pg_env, tmp_path):
    import psycopg2

    from medtrinity_core.pglock import AdvisoryLock, lock_key
    from medtrinity_core.storage import Workdir

    wd = Workdir.at(tmp_path / "wd")
    wd.dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "docker" / "dagster.yaml", wd.dagster_home / "dagster.yaml")
    lock = wd.lock("plan-x")
    assert isinstance(lock, AdvisoryLock)
    other = psycopg2.connect(host="127.0.0.1", port=pg_env["DAGSTER_PG_PORT"], user=USER, password=PASSWORD, dbname=DB)
    other.autocommit = True
    with other.cursor() as cur:
        with lock, lock:  # re-entrant in one process
            cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(str(wd.root), "plan-x"),))
            assert cur.fetchone()[0] is False  # held: another session (another machine) must wait
        cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(str(wd.root), "plan-x"),))
        assert cur.fetchone()[0] is True  # released
    other.close()


def test_two_shards_racing_for_one_image_on_the_postgres_instance_keep_one_copy_and_one_salt(pg_env, tmp_path, monkeypatch):
    monkeypatch.delenv("MEDTRINITY_SALT", raising=False)
    pixels = np.random.default_rng(11).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    for folder in ("nevus", "melanoma"):
        (tmp_path / "src" / folder).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "src" / folder / "img.png")  # the same image in two shards
    workdir = tmp_path / "wd"
    (workdir / "dagster").mkdir(parents=True)
    shutil.copy(REPO / "docker" / "dagster.yaml", workdir / "dagster" / "dagster.yaml")  # locks go to Postgres
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_normalize_shard, args=(str(tmp_path / "src"), str(workdir), shard, rel, barrier, out))
             for shard, rel in (("base-0000", "nevus/img.png"), ("base-0001", "melanoma/img.png"))]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    salts = {salt for _, salt, _, _, _ in results}
    assert len(salts) == 1  # one salt, created once under the advisory lock
    kinds = sorted((k for _, _, ks, _, _ in results for k in ks), key=str)
    assert kinds == sorted([None, "exact"], key=str)  # one copy kept, the other marked a duplicate of it
    kept = next(r for r in results if r[2][0] is None)
    assert next(r for r in results if r[2][0] == "exact")[3][0] == kept[4][0]  # it names the copy committed first
