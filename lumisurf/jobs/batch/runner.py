"""``lumisurf batch SPEC.yaml``: every scene of a spec as a Ray task (or one after another in this process).

Each scene is a task with its resources declared (``--cpus-per-task``, ``--gpus-per-task``); a task whose
worker is lost (a killed process, a lost node) is run again up to ``retries`` times and resumes from the
scene's checkpoint (:mod:`lumisurf.jobs.batch.scene_job`). Scenes that failed for a data or config reason are
not retried. A scene finished by an earlier run of the same spec (same pipeline) is skipped. The driver shows
scenes done / running / failed / pending and an ETA, and writes ``OUT/summary.csv`` and ``OUT/summary.md``.
Without Ray (or with ``--local``) the scenes run one after another in this process, with the same table.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from lumisurf.errors import LumisurfError
from lumisurf.jobs.batch.scene_job import SceneStatus, run_scene, scene_folder
from lumisurf.jobs.batch.spec import ScenePlan, load_batch
from lumisurf.jobs.batch.table import summary_row, write_tables

RAY_MISSING = "Ray is not installed: pip install 'lumisurf[cluster]' (or run the scenes here with --local)"


def import_ray(required: bool):
    """The ray module; None when it is missing and not ``required`` (raises LumisurfError when it is)."""
    try:
        import ray
    except ImportError:
        if required:
            raise LumisurfError(f"--address: {RAY_MISSING}") from None
        return None
    return ray


def queue(root: Path, plans: list[ScenePlan]) -> tuple[list[ScenePlan], list[ScenePlan]]:
    """(to run, finished before): a finished scene whose pipeline changed, or any unfinished one, runs again;
    a changed one from scratch, an unfinished one from its checkpoint."""
    todo, finished = [], []
    for plan in plans:
        status = SceneStatus(scene_folder(root, plan))
        state = status.read()
        same = state.get("fingerprint") == plan.fingerprint()
        if same and state.get("status") == "ok":
            finished.append(plan)
            continue
        if not same and status.folder.exists():
            if state.get("status") == "ok":
                print(f"{plan.name}: its pipeline changed since it finished; running it again from scratch")
            shutil.rmtree(status.folder / "run", ignore_errors=True)
            status.path.unlink(missing_ok=True)
        status.write(
            name=plan.name,
            fingerprint=plan.fingerprint(),
            status="pending",
            attempts=0,
            error=None,
            resumed_from=[],
            progress=0.0,
            wall_s=0.0,
            updated=None,
            stage=None,
        )
        todo.append(plan)
    return todo, finished


class Monitor:
    """A thread that reads the scenes' ``status.json`` every second: a line per scene that ends, and a bar
    with scenes done / running / failed / pending and the ETA (training progress of the running ones counts)."""

    def __init__(self, root: Path, plans: list[ScenePlan], bar: bool = True):
        self.root, self.plans, self.start = root, plans, time.monotonic()
        self.out = sys.stdout  # the streams as they are now: a scene run in this process redirects its own
        self.bar = tqdm(
            total=len(plans),
            file=sys.stderr,
            disable=not bar,
            dynamic_ncols=True,
            bar_format="{percentage:3.0f}%|{bar:20}| {desc}",
        )
        self.reported: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.poll()
        self.bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def poll(self) -> dict:
        states = {p.name: SceneStatus(scene_folder(self.root, p)).read() for p in self.plans}
        counts = dict.fromkeys(("ok", "running", "failed", "pending"), 0)
        work = 0.0
        for name, s in states.items():
            kind = s.get("status", "pending")
            counts[kind if kind in counts else "pending"] += 1
            work += 1.0 if kind in ("ok", "failed") else float(s.get("progress") or 0.0) if kind == "running" else 0.0
            if kind in ("ok", "failed") and name not in self.reported:
                self.reported.add(name)
                self._say(name, s)
        elapsed = time.monotonic() - self.start
        left = eta_seconds(list(states.values()), time.time())
        eta = "?" if left is None else _clock(left)
        running = [_doing(name, s) for name, s in states.items() if s.get("status") == "running"]
        self.bar.n = round(work, 2)
        self.bar.set_description_str(
            f"done {counts['ok']} · running {counts['running']} · failed "
            f"{counts['failed']} · pending {counts['pending']} · {_clock(elapsed)} elapsed, "
            f"ETA {eta}" + (f" | {', '.join(running[:3])}" if running else "") + (" ..." if len(running) > 3 else "")
        )
        return counts

    def _say(self, name: str, s: dict) -> None:
        m = s.get("metrics") or {}
        what = (
            f"failed: {s.get('error')}"
            if s.get("status") == "failed"
            else "ok"
            + (f", PSNR {m['psnr']:.2f}" if m.get("psnr") is not None else "")
            + (f", Chamfer {m['chamfer']:.4f}" if m.get("chamfer") is not None else "")
        )
        resumed = f", resumed from step {', '.join(map(str, s['resumed_from']))}" if s.get("resumed_from") else ""
        tqdm.write(
            f"[{len(self.reported)}/{len(self.plans)}] {name}: {what} ({s.get('wall_s', 0):.0f} s, "
            f"{s.get('attempts', 0)} attempt(s){resumed})",
            file=self.out,
        )


def eta_seconds(states: list[dict], now: float) -> float | None:
    """Seconds until every scene is done (None: nothing to go on yet). A running scene's remaining time is its own
    rate so far (time since it started / its training progress); a pending one takes the median time of the scenes
    done (else of the running ones' projections); the scenes share as many slots as are running now."""
    running, pending, took = [], 0, []
    for s in states:
        kind = s.get("status", "pending")
        if kind == "running":
            p, spent = float(s.get("progress") or 0.0), now - float(s.get("started") or now)
            running.append(spent * (1 - p) / p if p >= 0.02 else None)
            if p >= 0.02:
                took.append(spent / p)
        elif kind in ("ok", "failed") and s.get("wall_s"):
            took.append(float(s["wall_s"]))
        elif kind not in ("ok", "failed"):
            pending += 1
    each = sorted(took)[len(took) // 2] if took else None
    if each is None and (pending or None in running):
        return None
    rest = [r if r is not None else each for r in running]
    return max(max(rest, default=0.0), (sum(rest) + pending * (each or 0.0)) / max(1, len(running)))


def _doing(name: str, state: dict) -> str:
    """``chair: train 45%`` / ``chair: eval`` for the progress line."""
    stage = state.get("stage") or "starting"
    return f"{name}: {stage} {100 * float(state.get('progress') or 0):.0f}%" if stage == "train" else f"{name}: {stage}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def start_ray(ray, address: str | None, cpus: float, gpus: float) -> bool:
    """Start (no address) or join Ray and check the tasks fit; returns whether this call started it."""
    if ray.is_initialized():
        started = False
    else:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # no cluster there, a bad address
            raise LumisurfError(f"--address {address}: cannot start or join Ray ({str(exc).splitlines()[0]})") from None
        started = True
    try:
        check_resources(ray.cluster_resources(), cpus, gpus, autoscaling=address is not None)
    except LumisurfError:
        if started:
            ray.shutdown()
        raise
    return started


def run_on_ray(ray, plans: list[ScenePlan], root: Path, retries: int, cpus: float, gpus: float) -> None:
    """One task per scene; a task whose worker was lost more than ``retries`` times is recorded as failed."""
    task = ray.remote(run_scene)
    threads = max(1, int(cpus)) if cpus else None
    refs = {
        task.options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False, name=f"lumisurf:{p.name}"
        ).remote(p, str(root), threads): p
        for p in plans
    }
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=2.0)
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # raised outside the pipeline (lumisurf missing there?)
                _record_failure(root, refs[ref], f"the task raised {str(exc).splitlines()[-1][:300]}")
            except ray.exceptions.RayError as exc:  # the worker was lost and the retries are spent
                attempts = SceneStatus(scene_folder(root, refs[ref])).read().get("attempts", "?")
                _record_failure(
                    root,
                    refs[ref],
                    f"its worker was lost in each of {attempts} attempt(s) "
                    f"({type(exc).__name__}); run the spec again to resume from its "
                    f"checkpoint",
                )


def check_resources(total: dict, cpus: float, gpus: float, autoscaling: bool) -> None:
    """A task asking for more CPUs or GPUs than the whole cluster has would wait for ever: on a local instance
    that is an error, on a cluster (whose autoscaler may add nodes) a warning."""
    short = [
        f"{need:g} {name} per task but the cluster has {total.get(key, 0):g}"
        for name, key, need in (("CPU(s)", "CPU", cpus), ("GPU(s)", "GPU", gpus))
        if need > total.get(key, 0)
    ]
    if not short:
        return
    if not autoscaling:
        raise LumisurfError(f"--cpus-per-task / --gpus-per-task: {'; '.join(short)}; no scene could ever start")
    print(f"lumisurf batch: warning: {'; '.join(short)}: the scenes wait until nodes that have them join", flush=True)


def _record_failure(root: Path, plan: ScenePlan, error: str) -> None:
    SceneStatus(scene_folder(root, plan)).write(status="failed", error=error, finished=time.time())


def run_batch(
    spec_path: Path,
    out: Path | None = None,
    address: str | None = None,
    cpus_per_task: float = 1,
    gpus_per_task: float = 0,
    local: bool = False,
    progress: bool = True,
) -> Path:
    """Run every unfinished scene of the spec; write the table. Raises LumisurfError naming the failed scenes
    (after writing the table) when some failed."""
    spec, plans = load_batch(Path(spec_path))
    root = Path(out or spec.out or Path("runs") / f"batch_{Path(spec_path).stem}").resolve()
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise LumisurfError("--cpus-per-task must be > 0 and --gpus-per-task >= 0")
    ray = None if local else import_ray(required=address is not None)
    root.mkdir(parents=True, exist_ok=True)
    if Path(spec_path).resolve() != (root / "spec.yaml").resolve():
        shutil.copyfile(spec_path, root / "spec.yaml")  # what ran, beside its results
    todo, finished = queue(root, plans)
    where = (
        "in this process, one after another" + ("" if local else f" ({RAY_MISSING})")
        if ray is None
        else f"as Ray tasks ({address or 'a local Ray instance'}; {cpus_per_task:g} CPU, {gpus_per_task:g} GPU each)"
    )
    print(
        f"lumisurf batch: {len(plans)} scene(s), {len(finished)} finished before (skipped), {len(todo)} to run "
        f"{where}; outputs in {root}",
        flush=True,
    )
    started = start_ray(ray, address, cpus_per_task, gpus_per_task) if ray is not None and todo else False
    try:
        with Monitor(root, todo, bar=progress):
            if ray is not None:
                run_on_ray(ray, todo, root, spec.retries, cpus_per_task, gpus_per_task)
            else:
                for plan in todo:
                    run_scene(plan, str(root))
    finally:
        if started:
            ray.shutdown()
    names = {p.name for p in todo}
    rows = [summary_row(p, SceneStatus(scene_folder(root, p)).read(), p.name in names) for p in plans]
    md = write_tables(root, rows, f"Batch `{Path(spec_path).name}`: {len(plans)} scene(s)")
    print(f"\n{md}\n\nwrote {root / 'summary.csv'} and {root / 'summary.md'}", flush=True)
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise LumisurfError(
            f"{len(failed)} of {len(rows)} scene(s) did not finish: "
            + "; ".join(f"{r['scene']}: {r['status']}" for r in failed)
        )
    return root
