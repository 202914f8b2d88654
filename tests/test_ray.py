"""``extract`` on a real Ray cluster: a head plus two worker nodes started here on this machine
(``ray start --block``, each in its own process group, stopped by the fixture's finalizer),
and ``--ray local``. The nodes listen on this machine's address, not on loopback: Ray turns
127.0.0.1 into the node's address when connecting, and refuses a loopback-only multi-node
cluster on Linux. Same faces as the single-machine run, a worker killed mid-run, resume,
Ctrl-C. Ray is kept small: 2 logical CPUs per worker node, 100 MB object stores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, interrupt_extract, run_cli
from test_extract import assert_complete, make_clip, read_index

from livefaces.extract import ClusterOptions, ExtractOptions, extract

# Ray turns token authentication on for the clusters started here (token in ~/.ray/auth_token);
# a driver sends the token only with RAY_AUTH_MODE=token, read when ray is imported: this
# process is the driver of most runs below.
os.environ.setdefault("RAY_AUTH_MODE", "token")
pytest.importorskip("ray", reason="the ray extra (scripts/test.sh installs it)")

DEMO = ROOT / "livefaces" / "data" / "demo.mp4"
STORE = str(100 * 2**20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """pid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out.setdefault(ppid, []).append(int(d))
    return out


def _descendants(pid: int) -> list[int]:
    tree, todo, found = _children(), [pid], []
    while todo:
        for c in tree.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Cluster:
    """A head (no CPUs: it only coordinates) and worker nodes, all on 127.0.0.1."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")  # short: Ray's socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"  # Ray connects to the node's address
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_LOGGER_LEVEL="error",
                        RAY_AUTH_MODE="token")
        self.head: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list = []

    def start(self, workers: int = 2) -> None:
        # the token first: on a machine that never ran Ray the head writes ~/.ray/auth_token
        # while it starts, and a node or driver that looked for it a moment earlier failed with
        # "no authentication token was found" (a clean clone's first run, 5 errors)
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
                       env=self.env, capture_output=True, timeout=60, check=True)
        self.head = self._start(["--head", f"--port={self.port}", "--num-cpus=0",
                                 "--include-dashboard=false", f"--temp-dir={self.temp}"])
        self._wait_for(0)
        # one at a time: two nodes starting at once on one machine sometimes timed out ("the
        # current node timed out during startup"); a node that fails to start is started again
        for k in range(workers):
            for attempt in range(3):
                node = self._start([f"--address={self.address}", "--num-cpus=2"])
                try:
                    self._wait_for(2 * (k + 1), timeout=60, node=node)
                except AssertionError:
                    if attempt == 2:
                        self.workers.append(node)
                        raise
                    self._kill(node)
                    continue
                self.workers.append(node)
                break

    def _start(self, args: list[str]) -> subprocess.Popen:
        ports = [f"--{name}={_free_port()}" for name in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
            "runtime-env-agent-port", "node-manager-port", "object-manager-port")]
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
               f"--object-store-memory={STORE}", *ports,
               "--disable-usage-stats", *args]
        log = open(Path(self.temp) / f"node{len(self.logs)}.log", "w")  # noqa: SIM115
        self.logs.append(log)
        return subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _kill(self, node: subprocess.Popen) -> None:
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait(timeout=30)

    def _wait_for(self, cpus: int, timeout: float = 90, node: subprocess.Popen | None = None) -> None:
        """Until the cluster answers and has ``cpus`` CPUs (ray status from a subprocess, so
        this test process is not left connected)."""
        deadline = time.monotonic() + timeout
        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(int(ray.cluster_resources().get('CPU', 0)))")
        seen = ""
        while time.monotonic() < deadline and (node is None or node.poll() is None):
            r = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0 and r.stdout.strip() == str(cpus):
                return
            seen = f"{r.stdout.strip()[-200:]} {r.stderr.strip()[-500:]}"
            time.sleep(1)
        logs = " | ".join(Path(f.name).read_text()[-600:] for f in self.logs)
        raise AssertionError(f"the Ray cluster did not come up with {cpus} CPUs: {seen}; {logs}")

    def detector_processes(self) -> list[int]:
        """pids of the detector actors' worker processes."""
        return [p for w in self.workers for p in _descendants(w.pid) if "_Detect" in _cmdline(p)]

    def stop(self) -> None:
        procs = [*self.workers, *([self.head] if self.head else [])]
        for p in procs:  # ray start --block stops its node's processes on SIGTERM
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the node
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        import shutil

        for f in self.logs:
            f.close()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut, grace_hopper) -> list[Path]:
    """The bundled demo clip, a made clip with two faces, and the shared clips when present."""
    root = tmp_path_factory.mktemp("rayclips")
    make_clip(root / "two.mp4", [astronaut, grace_hopper], frames=60)
    found = [DEMO, root / "two.mp4"]
    shared = SHARED / "media" / "_derived" / "intel_sample_videos_gif_to_mp4"
    if shared.is_dir():
        found += sorted(shared.glob("*.mp4"))[:3]
    return found


OPTS = ExtractOptions(stride=2, batch_size=8)


@pytest.fixture(scope="module")
def reference(detector, clips, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("rayref") / "faces"
    report = extract(clips, out, OPTS, detector=detector)
    assert report.failed == [] and report.faces > 50
    return read_index(out)


def _key(r: dict) -> tuple:
    return r["source"], r["frame"], r["crop"]


def assert_same_faces(records: list[dict], reference: list[dict]) -> None:
    assert sorted(map(_key, records)) == sorted(map(_key, reference))
    ref = {_key(r): r for r in reference}
    for r in records:
        want = ref[_key(r)]
        assert r.keys() == want.keys()
        assert r["box"] == pytest.approx(want["box"], abs=0.05)
        assert r["confidence"] == pytest.approx(want["confidence"], abs=1e-3)
        assert r["pts"] == want["pts"]


def test_same_faces_as_the_single_machine_run(cluster, clips, reference, tmp_path):
    out = tmp_path / "faces"
    report = extract(clips, out, OPTS, cluster=ClusterOptions(cluster.address, segment_seconds=1.5))
    assert report.failed == [] and report.done == len(clips)
    records = assert_complete(out)
    assert_same_faces(records, reference)
    parts = [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines()]
    assert len(parts) > len(clips)  # the videos were cut into segments
    done = [json.loads(line) for line in (out / "done.jsonl").read_text().splitlines()]
    assert sorted(d["key"] for d in done) == sorted(str(c.resolve()) for c in clips)
    assert sum(d["faces"] for d in done) == len(records)
    again = extract(clips, out, OPTS, cluster=ClusterOptions(cluster.address))
    assert (again.skipped, again.frames) == (len(clips), 0)


def test_worker_killed_mid_run_completes_without_duplicates(cluster, clips, reference, tmp_path):
    out = tmp_path / "faces"
    killed: list[int] = []

    def progress(p):
        if not killed and p.frames_done >= 10:
            pids = cluster.detector_processes()
            assert pids, "no detector actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    report = extract(clips, out, OPTS, progress=progress,
                     cluster=ClusterOptions(cluster.address, segment_seconds=1.5))
    assert killed, "the run ended before a worker could be killed"
    assert report.failed == [] and report.done == len(clips)
    assert_same_faces(assert_complete(out), reference)
    # the killed actor was replaced
    assert killed[0] not in cluster.detector_processes()


def test_stopped_run_resumes_by_segment(cluster, clips, reference, tmp_path):
    out = tmp_path / "faces"
    stop = threading.Event()

    def progress(p):
        if p.frames_done >= 40:
            stop.set()

    opts = ClusterOptions(cluster.address, segment_seconds=1.0)
    first = extract(clips, out, OPTS, progress=progress, stop=stop, cluster=opts)
    assert stop.is_set() and first.done < len(clips)
    segments = (out / "parts.jsonl").read_text().splitlines()
    assert segments, "no segment committed before the stop"
    with (out / "index.jsonl").open("a") as f:  # a torn line, as a killed driver could leave
        f.write('{"source": "x", "fra')
    total = sum(1 for _ in reference)
    second = extract(clips, out, OPTS, cluster=opts)
    assert second.failed == [] and first.done + second.done == len(clips)
    assert second.faces < total  # the committed segments were not redone
    assert_same_faces(assert_complete(out), reference)


@pytest.mark.parametrize("when", ["running", "workers done"])
def test_ctrl_c_leaves_complete_files_and_rerun_finishes(cluster, clips, reference, tmp_path, when):
    """Ctrl-C while the workers run, or once they have written every crop and the driver has
    not read all their rows yet (Ray's core worker used to end the process then: exit 1)."""
    out = tmp_path / "faces"

    def workers_done(out: Path) -> bool:
        return sum(1 for p in out.rglob("*.jpg") if not p.name.startswith(".")) >= len(reference)

    args = ["extract", *map(str, clips), "--out", str(out), "--stride", "2", "--batch-size", "8",
            "--ray", cluster.address, "--segment-seconds", "1", "--progress", "off"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="token")
    _, err = interrupt_extract(args, env, out, ready=workers_done if when == "workers done" else None)
    assert "interrupted" in err and "Traceback" not in err
    assert_complete(out)
    r = subprocess.run([sys.executable, "-m", "livefaces", *args], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert_same_faces(assert_complete(out), reference)


def test_ray_local_from_the_command_line(detector, tmp_path):
    single = extract([DEMO], tmp_path / "single", ExtractOptions(stride=10), detector=detector)
    out = tmp_path / "faces"
    r = run_cli("extract", str(DEMO), "--out", str(out), "--stride", "10", "--ray", "local",
                "--workers", "1", "--segment-seconds", "4", "--progress", "off", timeout=240)
    assert r.returncode == 0, r.stderr
    # the summary; at most one line of Ray's C++ core before it (its log level being set)
    lines = r.stderr.splitlines()
    assert lines[-1].startswith("1 of 1 inputs extracted") and len(lines) <= 2, r.stderr
    assert "Traceback" not in r.stderr and "INFO" not in r.stderr
    assert_same_faces(assert_complete(out), read_index(tmp_path / "single"))
    assert single.faces == len(read_index(out))


def test_import_livefaces_never_imports_ray():
    code = ("import sys, livefaces, livefaces.extract, livefaces.cli; "
            "from livefaces.extract import ClusterOptions, extract; "
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
