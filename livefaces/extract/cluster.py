"""Extraction on a Ray cluster, with Ray Data. The only module of livefaces that imports ``ray``
(the ``ray`` extra); nothing imports it until ``extract(..., cluster=...)`` runs.

One streaming dataset, three stages::

    parts (one row each) ─► decode: CPU tasks ─► detect: actor pool ─► write: CPU tasks ─► driver
    (parts.py: video        (flat_map: a part     (map_batches: each     (crops written      Ledger: index
     segments, image         to frame rows,        actor loads the        where the task      lines + records,
     batches)                RGB bytes)            engine once; batches   runs, atomically;   a part committed
                                                   of frames; CUDA        index lines back)   when all its
                                                   actors get num_gpus)                       rows are in

Ray Data streams with back-pressure (the object store bounds what is in flight) and retries
tasks and restarts actors whose worker died; the driver's :class:`~.parts.Ledger` drops the
duplicate rows a retry can send. The GPU path (``num_gpus`` per actor) is written but was not
run here (no GPU on the development machines).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from ..detect import rescale
from ..errors import InputError, LiveFacesError
from ..types import face_json
from .decode import Input
from .options import ClusterOptions, ExtractOptions
from .output import ExtractReport, Progress, face_crops, remove_temp_files, write_crops
from .parts import Ledger, Part, part_frames, plan_parts

log = logging.getLogger(__name__)

#: seconds between two progress callbacks
PROGRESS_EVERY_S = 0.25


# -- worker side ---------------------------------------------------------------------------------
def _decode(row: dict, stride: int, max_pixels: int | None) -> Iterator[dict]:
    """flat_map: a part row -> its frame rows (see :func:`~.parts.part_frames`)."""
    for out in part_frames(row["spec"], stride, max_pixels):
        yield {**out, "part": row["part"]}


class _Detect:
    """The detector actor: builds the engine once, then detects on batches of frames and
    crops the faces (crops are small; the full frame goes no further)."""

    def __init__(self, options: ExtractOptions) -> None:
        from ..detect.engine import make_engine

        self.options = options
        self.engine = make_engine(options.detector)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        opts = self.options
        n = len(batch["frame"])
        faces_out = [""] * n
        crops_out = [b""] * n
        counts = np.zeros(n, np.int64)
        todo, images, smalls = [], [], []
        for k in range(n):
            if int(batch["frame"][k]) < 0:
                continue
            h, w = int(batch["h"][k]), int(batch["w"][k])
            image = np.frombuffer(batch["image"][k], np.uint8).reshape(h, w, 3)
            todo.append(k)
            images.append(image)
            smalls.append(rescale.resize(image, opts.resize))
        found = self.engine.detect_batch(smalls) if smalls else []
        for k, image, small, faces in zip(todo, images, smalls, found):
            faces = rescale.to_original(faces, small.shape, image.shape)
            crops = face_crops(image, faces, opts)
            counts[k] = len(faces)
            faces_out[k] = json.dumps([face_json(faces.boxes[j], faces.scores[j], faces.landmarks[j])
                                       for j in range(len(faces))])
            crops_out[k] = np.stack(crops).tobytes() if crops else b""
        out = {c: batch[c] for c in ("part", "input", "frame", "pts", "rows", "error", "source",
                                     "name", "vkind")}
        out["faces"] = np.array(faces_out, dtype=object)
        out["crops"] = np.array(crops_out, dtype=object)
        out["count"] = counts
        return out


def _write(batch: dict[str, np.ndarray], out_dir: str, options: ExtractOptions) -> dict[str, np.ndarray]:
    """map_batches task: write the crops of a batch (atomically, where the task runs) and turn
    its faces into index lines."""
    out = Path(out_dir)
    size = options.size
    n = len(batch["frame"])
    lines = [""] * n
    for k in range(n):
        count = int(batch["count"][k])
        if count == 0:
            continue
        inp = Input(str(batch["source"][k]), Path(), str(batch["vkind"][k]), str(batch["name"][k]), "")
        crops = np.frombuffer(batch["crops"][k], np.uint8).reshape(count, size, size, 3)
        pts = float(batch["pts"][k])
        lines[k] = "".join(write_crops(out, options, inp, int(batch["frame"][k]),
                                       None if math.isnan(pts) else pts, list(crops),
                                       json.loads(batch["faces"][k])))
    res = {c: batch[c] for c in ("part", "input", "frame", "rows", "error", "source")}
    res["lines"] = np.array(lines, dtype=object)
    res["faces"] = batch["count"]
    return res


# -- driver side ----------------------------------------------------------------------------------
def _connect(cluster: ClusterOptions) -> bool:
    """Start or join the cluster; True when this run connected (and so disconnects after)."""
    if ray.is_initialized():
        return False
    kw: dict = {"include_dashboard": False, "log_to_driver": False}
    try:
        if cluster.address == "local":
            cpus = cluster.cpus or (os.cpu_count() or 1) + 1
            store = cluster.object_store_mb * 2**20 if cluster.object_store_mb else None
            ray.init(address="local", num_cpus=cpus, object_store_memory=store, **kw)
        else:
            kw.pop("include_dashboard")
            ray.init(address=cluster.address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise LiveFacesError(f"cannot reach the Ray cluster at {cluster.address!r}: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                             "start one with 'ray start --head' or use --ray local") from None
    return True


def _placement(options: ExtractOptions, cluster: ClusterOptions) -> tuple[int, dict, ExtractOptions]:
    """(detector actors, their Ray resources, the options each actor builds its engine from)."""
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 0))
    device = options.detector.device
    if device.startswith("cuda") and gpus == 0:
        raise InputError("--device cuda: the Ray cluster has no GPUs; use --device cpu or auto")
    if gpus > 0 and device != "cpu":  # untested here: no GPU on the development machines
        workers = cluster.workers or max(1, int(gpus / cluster.gpus_per_worker))
        return workers, {"num_gpus": cluster.gpus_per_worker, "num_cpus": 1}, options
    workers = cluster.workers or max(1, int(cpus - 1))
    detector = options.detector
    if detector.threads is None:  # one actor per core: ONNX threads must not fight
        detector = replace(detector, threads=max(1, int(cluster.cpus_per_worker)), device="cpu")
    return workers, {"num_cpus": cluster.cpus_per_worker}, replace(options, detector=detector)


def _let_iterator_threads_end(before: set[threading.Thread], timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) for the threads Ray Data's row iterator started (not in
    ``before``) to end, so none is fetching a block when ``ray.shutdown()`` runs: Ray's core
    worker then ends the whole process, with exit code 1 and no message (seen with Ctrl-C
    once the dataset had finished but the driver had not read every row). An iterator left
    early is in a reference cycle, and its threads are told to stop only when that is
    collected, hence the ``gc.collect()``. Ray's block prefetcher thread only waits for work
    and never ends by itself; it is not waited for."""
    gc.collect()
    deadline = time.monotonic() + timeout
    started = [t for t in set(threading.enumerate()) - before if t.name != "Prefetcher"]
    for t in started:
        t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in started if t.is_alive()]
    if left:
        log.warning("Ray Data threads still running at shutdown: %s", ", ".join(left))


def run_on_cluster(out: Path, todo: list[Input], done_segments: dict[str, dict],
                   options: ExtractOptions, cluster: ClusterOptions, report: ExtractReport,
                   progress: Callable[[Progress], None] | None,
                   stop: threading.Event | None) -> None:
    """Run the job on Ray (see the module docstring); fills ``report``. Interrupted
    (``stop``, ``KeyboardInterrupt``): committed parts stay, the rest is redone next time."""
    start = time.monotonic()
    parts: list[Part] = plan_parts(todo, options.stride, cluster, done_segments)
    totals = [p.frames for p in parts]
    state = Progress(frames_total=None if None in totals else sum(t or 0 for t in totals),
                     inputs_total=len(todo))
    ledger = Ledger(out, todo, parts, done_segments, report, state)
    connected = False
    rows = None
    try:
        if not parts:
            return
        connected = _connect(cluster)
        workers, resources, worker_options = _placement(options, cluster)
        report.engine = (f"ray: {workers} detector actors"
                         f" ({'GPU' if 'num_gpus' in resources else 'CPU'})")
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds: Any = ray.data.from_items([{"part": k, "spec": p.spec(todo)} for k, p in enumerate(parts)],
                                 override_num_blocks=len(parts))
        ds = ds.flat_map(_decode, fn_kwargs={"stride": options.stride,
                                                "max_pixels": options.max_pixels}, num_cpus=0.5)
        ds = ds.map_batches(_Detect, fn_constructor_kwargs={"options": worker_options},
                            batch_size=options.batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers), **resources)
        ds = ds.map_batches(_write, fn_kwargs={"out_dir": str(out.resolve()), "options": options},
                            batch_format="numpy", batch_size=None, num_cpus=0.25)
        shown = 0.0
        before = set(threading.enumerate())
        rows = iter(ds.iter_rows())
        for row in rows:
            ledger.add(row)
            now = time.monotonic()
            state.elapsed_s = now - start
            if progress is not None and now - shown >= PROGRESS_EVERY_S:
                shown = now
                progress(state)
            if stop is not None and stop.is_set():
                break
        if ledger.finished and progress is not None:
            progress(state)
    finally:
        ledger.close()
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # ends the streaming executor
            rows = None
            _let_iterator_threads_end(before)
        if connected:
            ray.shutdown()
            remove_temp_files(out)  # crops a killed write task had not renamed yet
        report.seconds = time.monotonic() - start
