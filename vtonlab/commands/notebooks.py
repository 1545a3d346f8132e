"""``python -m vtonlab notebooks``: list the course, or execute every notebook headlessly.

``python -m vtonlab notebooks run`` (what ``make reproduce`` calls) executes each notebook in
``notebooks/`` top to bottom in one profile, writes the executed copy to ``results/notebooks/``, and
gathers the closing ``Summary`` table of each into ``results/summary.md`` (plus
``results/summary.json`` with wall times and failures).

While it runs it says:

- which profile it chose and why (``--profile``, ``$VTONLAB_PROFILE``, or auto: CUDA or not);
- before each notebook, which models the notebook will load (shipped or cached checkpoint) and which
  it must train, with the training time recorded in the shipped manifest;
- what the running notebook is doing: ``cell k of N`` and the last progress line it printed (training
  bars, whether text on stderr or tqdm widgets), on ONE updating line on a terminal, as plain lines
  (at most one every few seconds) when the output is a file or a CI log.

Every notebook gets a kernel of its own, which is stopped when the notebook ends, also when a cell
fails or times out: at most one kernel is alive at any time. A failing notebook does not stop the
rest; the summary names its failing cell and the error's last line, and the command exits with 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from vtonlab import paths
from vtonlab.profiles import ENV_VAR, profile_name

PROFILE_CHOICES = ("ci", "cpu", "gpu", "auto")

METADATA_KEY = "vtonlab"
"""A notebook declares the checkpoints it loads or trains in ``metadata["vtonlab"]["models"]`` (a list of
checkpoint names, e.g. ``["gmm", "gml"]``); :data:`COURSE_MODELS` holds the declarations of the course
notebooks that have none in their metadata."""


COURSE_MODELS: dict[str, tuple[str, ...]] = {
    "00_welcome": ("demo",),
    "02_clip": ("clip",),
    # gmm.ABLATIONS as checkpoint names (a test keeps the two equal; importing vtonlab.gmm here would put
    # torch into the runner's memory for the whole run), then the seed repeats of tps_rgb.
    "04_geometric_matching": ("gmm", *(f"gmm_ablation_{key}" for key in (
        "tps_rgb", "tps_rgb_reg", "tps_mask", "tps_mask_reg", "affine_rgb", "tps_rgb_corrnorm", "tps_rgb_lr1e-3",
        "tps_rgb_earlier", "tps_rgb_flow", "tps_rgb_seed1", "tps_rgb_seed2")), "gml"),
}
"""Checkpoint names (as in ``data/checkpoints/<name>-<profile>.json``) each course notebook loads or trains."""

PLAIN_EVERY_S = 5.0
"""Without a terminal, a progress line is written at most this often (seconds)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def notebook_paths(root: Path | None = None) -> list[Path]:
    root = root or paths.repo_root() / "notebooks"
    return sorted(p for p in root.glob("[0-9][0-9]_*.ipynb"))


def register(sub) -> None:
    p = sub.add_parser("notebooks", help="list the notebooks, or run them all headlessly (make reproduce)")
    p.add_argument("action", choices=["list", "run"], help="list: the course in order; run: execute every notebook")
    p.add_argument("--out", default=None, help="results folder (default: results/)")
    p.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name contains one of these")
    p.add_argument("--profile", choices=PROFILE_CHOICES, default=None,
                   help=f"profile of every notebook (default: ${ENV_VAR}, else auto: gpu with CUDA, else cpu)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    p.set_defaults(func=run)


def _title(nb_path: Path) -> str:
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return nb_path.stem


# ---------------------------------------------------------------------------- profile and models
def choose_profile(argument: str | None = None) -> tuple[str, str]:
    """``(profile name, why)``: the ``--profile`` argument, else ``$VTONLAB_PROFILE``, else auto."""
    raw = os.environ.get(ENV_VAR)
    if argument and argument != "auto":
        return profile_name(argument), "from --profile"
    if argument is None and raw is not None and raw.strip().lower() != "auto":
        return profile_name(None), f"from {ENV_VAR}={raw.strip()}"
    name = auto_profile()
    return name, "auto: a CUDA device is available" if name == "gpu" else "auto: no CUDA device"


def auto_profile() -> str:
    """``profile_name("auto")`` (gpu with CUDA, else cpu), asked in a short-lived process: importing torch
    here would keep its memory in the runner for the whole run."""
    code = "from vtonlab.profiles import profile_name; print(profile_name('auto'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"could not check for a CUDA device ({sys.executable} -c {code!r}): {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class ModelPlan:
    """What a notebook will do for one checkpoint: load it (``source`` shipped or cached) or train it."""

    name: str
    profile: str
    source: str | None  # "shipped", "cached", or None: must train
    train_seconds: float | None = None  # training time recorded in the manifest

    def describe(self) -> str:
        if self.source is None:
            return f"{self.name} (no shipped or cached checkpoint)"
        took = f"; training took {self.train_seconds:.0f} s" if self.train_seconds else ""
        return f"{self.name}-{self.profile} ({self.source}{took})"


def declared_models(nb_path: Path, nb: Any) -> tuple[str, ...]:
    """The checkpoint names a notebook declares (:data:`METADATA_KEY` metadata, else :data:`COURSE_MODELS`)."""
    models = (nb.metadata.get(METADATA_KEY) or {}).get("models")
    if models is None:
        return COURSE_MODELS.get(nb_path.stem, ())
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError(f"{nb_path}: metadata {METADATA_KEY}.models must be a list of checkpoint names, got {models!r}")
    return tuple(models)


def _recorded_seconds(manifest_path: Path) -> float | None:
    try:
        seconds = (json.loads(manifest_path.read_text()).get("history") or {}).get("seconds")
    except (OSError, ValueError):
        return None
    return float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None


def model_plan(names: tuple[str, ...] | list[str], profile: str) -> list[ModelPlan]:
    """For each checkpoint name: shipped (``data/checkpoints/<name>-<profile>.json``), cached on this
    machine (``<cache>/checkpoints/<name>-<profile>-<config hash>.json``) or to be trained.

    The files are found by name only; a checkpoint whose config no longer matches is retrained by the
    notebook (``load_or_train`` says so in the notebook's output).
    """
    plans = []
    for name in names:
        shipped = paths.shipped_checkpoints_dir() / f"{name}-{profile}.json"
        cached = sorted((paths.cache_dir() / "checkpoints").glob(f"{name}-{profile}-{'?' * 12}.json"),
                        key=lambda p: p.stat().st_mtime)
        if shipped.exists():
            plans.append(ModelPlan(name, profile, "shipped", _recorded_seconds(shipped)))
        elif cached:
            plans.append(ModelPlan(name, profile, "cached", _recorded_seconds(cached[-1])))
        else:
            plans.append(ModelPlan(name, profile, None))
    return plans


def plan_line(plans: list[ModelPlan]) -> str | None:
    """``will load: gmm-cpu (shipped; training took 149 s); must train: gml (no shipped or cached checkpoint)``."""
    load = [p.describe() for p in plans if p.source is not None]
    train = [p.describe() for p in plans if p.source is None]
    parts = ([f"will load: {', '.join(load)}"] if load else []) + ([f"must train: {', '.join(train)}"] if train else [])
    return "; ".join(parts) or None


# ---------------------------------------------------------------------------- progress
def last_line(text: str) -> str:
    """The last non-empty line of a stream chunk, carriage returns (tqdm) and ANSI colours removed."""
    for piece in reversed(re.split(r"[\r\n]", _ANSI.sub("", text))):
        piece = "".join(ch for ch in " ".join(piece.split()) if ch.isprintable())
        if piece:
            return piece
    return ""


def tqdm_widget_text(widget_state: dict[str, dict], comm_id: str | None) -> str | None:
    """The text of the tqdm notebook bar that widget ``comm_id`` belongs to, e.g. ``denoiser: 45% 27/60 [...]``.

    ``tqdm.notebook`` draws a bar as ``HBox([HTML(left text), FloatProgress, HTML(right text)])``;
    ``widget_state`` is nbclient's ``{model id: state}`` of the running kernel.
    """
    if not comm_id or comm_id not in widget_state:
        return None
    ref = f"IPY_MODEL_{comm_id}"
    for model_id, state in widget_state.items():
        children = state.get("children") or []
        if state.get("_model_name") != "HBoxModel" or len(children) != 3 or (model_id != comm_id and ref not in children):
            continue
        parts = [widget_state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in children]
        if [p.get("_model_name") for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
            continue
        text = " ".join(html.unescape(str(parts[i].get("value", ""))) for i in (0, 2))
        return " ".join(text.split()) or None  # tqdm pads with figure spaces
    return None


class ProgressLine:
    """One updating line on a terminal (carriage return), plain lines (at most one per ``every`` s) otherwise.

    ``show(text)`` replaces the transient line (``force`` skips the plain-line wait, used when a cell
    starts); ``print(text)`` writes a permanent line above it.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, every: float | None = None,
                 clock=time.monotonic, width: int | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = PLAIN_EVERY_S if every is None else every
        self.clock = clock
        self.width = width or shutil.get_terminal_size((100, 24)).columns
        self._last_text: str | None = None
        self._last_time = -float("inf")
        self._shown = False

    def show(self, text: str, force: bool = False) -> None:
        if text == self._last_text:
            return
        now = self.clock()
        if not self.tty and not force and now - self._last_time < self.every:
            return  # a terminal shows every change (one line); a log gets a snapshot every few seconds
        self._last_text, self._last_time = text, now
        if self.tty:
            self.stream.write("\r" + text[: max(self.width - 1, 10)] + "\x1b[K")
            self._shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self._shown = False
        self._last_text = None

    def print(self, text: str) -> None:
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


# ---------------------------------------------------------------------------- one notebook
@dataclass
class NotebookResult:
    """How one notebook went: ``status`` ok/failed/interrupted, for a failure the cell (1-based, all cells) and error."""

    name: str
    status: str = "ok"
    seconds: float = 0.0
    cell: int | None = None
    n_cells: int = 0
    execution_count: int | None = None
    error: str | None = None

    def where(self) -> str:
        if self.cell is None:
            return "before the first cell"
        count = f" (In [{self.execution_count}])" if self.execution_count else ""
        return f"cell {self.cell} of {self.n_cells}{count}"


def _error_line(err: BaseException) -> str:
    """The error's last line (``ValueError: boom``); for runner errors (timeout, dead kernel) their first line."""
    from nbclient.exceptions import CellExecutionError

    if isinstance(err, CellExecutionError):
        return last_line(f"{err.ename}: {err.evalue}")[:300]
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
    return f"{type(err).__name__}: {first}"[:300]


def _sliced(get_msg, slice_s: float = 1.0):
    """``get_msg`` that waits in slices of ``slice_s`` seconds up to the caller's timeout (``None``: forever).

    With widget cells (``interact``), a message that has already arrived sometimes does not wake a long
    wait on a kernel channel, so the cell sat until its whole timeout (nbclient issue #312); a short wait
    that is repeated sees it within a slice.
    """
    from queue import Empty

    async def wrapped(timeout: float | None = None, **kw):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else min(slice_s, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left, **kw)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return wrapped


def _wait_until_gone(pid: int | None, limit_s: float = 10.0) -> None:
    """Return once kernel process ``pid`` has exited (SIGKILL after ``limit_s``), so the next notebook's
    kernel never overlaps it: a shutdown request can return while the process is still finishing."""
    from vtonlab.locks import pid_alive

    if not pid:
        return
    for last_resort in (False, True):
        deadline = time.monotonic() + limit_s
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
            time.sleep(0.02)
        if not pid_alive(pid) or last_resort:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _client_class():
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    class ProgressClient(NotebookClient):
        """A NotebookClient that owns its kernel (so nbclient stops it) and reports progress as it runs."""

        def __init__(self, nb, *, kernel_dir: str, progress: ProgressLine, label: str, **kw):
            super().__init__(nb, **kw)
            self.kernel_dir = kernel_dir
            self.progress = progress
            self.label = label
            self.cell_index: int | None = None
            self.started = time.perf_counter()
            self.detail = ""
            self.made_km: AsyncKernelManager | None = None
            self.kernel_pid: int | None = None  # so the runner can wait for the process itself to end
            self.interrupted_by: int | None = None  # the signal (Ctrl-C, SIGTERM) that stopped the run
            self.on_cell_execute = self._cell_started
            self.on_notebook_start = self._catch_signals

        def create_kernel_manager(self) -> AsyncKernelManager:
            # an async manager, as nbclient expects (with a blocking one the cell timeout never fires);
            # IPC sockets in a private folder: no TCP port is involved (unix socket paths must stay short)
            ipc = os.path.join(self.kernel_dir, "k")
            transport = {"transport": "ipc", "ip": ipc} if len(ipc) < 90 else {}
            self.km = self.made_km = AsyncKernelManager(kernel_name=self.kernel_name or "python3", **transport,
                                                        connection_file=os.path.join(self.kernel_dir, "kernel.json"))
            return self.km

        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            provisioner = getattr(self.km, "provisioner", None)
            self.kernel_pid = getattr(provisioner, "pid", None)
            for channel in (kc.shell_channel, kc.iopub_channel):
                channel.get_msg = _sliced(channel.get_msg)
            return kc

        def _catch_signals(self, notebook) -> None:
            # nbclient's own handlers stop the kernel and let the run go on with the next notebook;
            # Ctrl-C or SIGTERM must stop the whole run instead (the kernel is stopped on the way out)
            task, loop = asyncio.current_task(), asyncio.get_running_loop()

            def stop(signum: int) -> None:
                self.interrupted_by = signum
                task.cancel()

            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, stop, signum)
                except (RuntimeError, NotImplementedError, ValueError):  # not the main thread, or no signals
                    pass

        def _cell_started(self, cell, cell_index: int) -> None:
            self.cell_index, self.detail = cell_index, ""
            self._refresh(force=True)

        def _refresh(self, force: bool = False) -> None:
            k = "?" if self.cell_index is None else self.cell_index + 1
            text = f"  {self.label}  cell {k} of {len(self.nb.cells)}  {_elapsed(time.perf_counter() - self.started)}"
            self.progress.show(text + (f"  | {self.detail}" if self.detail else ""), force=force)

        def process_message(self, msg, cell, cell_index):
            try:
                return super().process_message(msg, cell, cell_index)
            finally:
                kind, content = msg.get("msg_type", ""), msg.get("content") or {}
                line = None
                if kind == "stream":
                    line = last_line(content.get("text", ""))
                elif kind in ("comm_open", "comm_msg"):
                    line = tqdm_widget_text(self.widget_state, content.get("comm_id"))
                if line:
                    self.detail = line
                    self._refresh()

        def stop_kernel(self) -> None:
            """Stop the kernel if it still runs (nbclient stops the kernels it owns; this is the guard)."""
            km = self.made_km
            if km is None:
                return
            try:
                if km.has_kernel:
                    run_sync(km.shutdown_kernel)(now=True)
            finally:
                run_sync(km.cleanup_resources)()
                _wait_until_gone(self.kernel_pid)

    return ProgressClient


def run_notebook(nb_path: Path, out_dir: Path, *, env: dict[str, str], timeout: int,
                 progress: ProgressLine) -> NotebookResult:
    """Execute one notebook in a fresh kernel (stopped at the end, also on failure); write the executed copy."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    result = NotebookResult(nb_path.name, n_cells=len(nb.cells))
    kernel_dir = tempfile.mkdtemp(prefix="vtonlab-k-")
    client = _client_class()(nb, kernel_dir=kernel_dir, progress=progress, label=nb_path.stem, timeout=timeout,
                             startup_timeout=120, kernel_name="python3",
                             resources={"metadata": {"path": str(nb_path.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except (Exception, asyncio.CancelledError) as err:  # a failing notebook must not stop the others
        if client.interrupted_by is not None:  # Ctrl-C: nbclient reports the cancelled cell as DeadKernelError
            result.status, result.error = "interrupted", f"stopped by {signal.Signals(client.interrupted_by).name}"
        elif isinstance(err, asyncio.CancelledError):
            raise
        else:
            result.status, result.error = "failed", _error_line(err)
            tail = _ANSI.sub("", str(err)).rstrip().splitlines()[-20:]
            progress.print("\n".join(f"    | {ln}" for ln in tail))
    finally:
        try:
            client.stop_kernel()
        finally:
            shutil.rmtree(kernel_dir, ignore_errors=True)
            progress.clear()
    if result.status != "ok" and client.cell_index is not None:
        result.cell = client.cell_index + 1
        result.execution_count = nb.cells[client.cell_index].get("execution_count")
    result.seconds = round(time.perf_counter() - start, 1)
    nbformat.write(nb, out_dir / "notebooks" / nb_path.name)
    return result


# ---------------------------------------------------------------------------- the command
def _summary_tables(results: list[NotebookResult]) -> str:
    text = "\n## Wall time per notebook\n\n| notebook | seconds | status |\n|---|---|---|\n"
    text += "\n".join(f"| {r.name} | {r.seconds} | {r.status} |" for r in results) + "\n"
    failed = [r for r in results if r.status != "ok"]
    if failed:
        text += "\n## Failed notebooks\n\n| notebook | where | error |\n|---|---|---|\n"
        text += "\n".join(f"| {r.name} | {r.where()} | {(r.error or '').replace('|', chr(92) + '|')} |" for r in failed) + "\n"
    return text


def run(args) -> int:
    nbs = notebook_paths()
    if not nbs:
        raise FileNotFoundError(f"no notebooks found in {paths.repo_root() / 'notebooks'}")
    if args.action == "list":
        for nb in nbs:
            print(f"{nb.name:40s} {_title(nb)}")
        return 0

    import nbformat

    from vtonlab.report import collect

    profile, why = choose_profile(getattr(args, "profile", None))
    if args.only:
        nbs = [nb for nb in nbs if any(s in nb.name for s in args.only)]
        if not nbs:
            raise FileNotFoundError(f"--only {' '.join(args.only)}: no notebook name contains any of these")
    out = Path(args.out) if args.out else paths.results_dir()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    # the kernels get the profile and the results folder through their environment
    env = {**os.environ, ENV_VAR: profile, "VTONLAB_RESULTS_DIR": str(out.resolve())}
    progress = ProgressLine()
    progress.print(f"profile: {profile} ({why}); {len(nbs)} notebook(s), executed copies in {out / 'notebooks'}")
    results = []
    for nb_path in nbs:
        progress.print(f"[{profile}] {nb_path.name}")
        line = plan_line(model_plan(declared_models(nb_path, nbformat.read(nb_path, as_version=4)), profile))
        if line:
            progress.print(f"    {line}")
        (out / "summaries" / f"{nb_path.stem}.json").unlink(missing_ok=True)  # no stale table from an earlier run
        r = run_notebook(nb_path, out, env=env, timeout=args.timeout, progress=progress)
        results.append(r)
        status = "ok" if r.status == "ok" else f"{r.status.upper()} at {r.where()}: {r.error}"
        progress.print(f"    {status} in {r.seconds} s -> {out / 'notebooks' / nb_path.name}")
        if r.status == "interrupted":
            break
    (out / "summary.md").write_text(collect(out) + _summary_tables(results))
    (out / "summary.json").write_text(json.dumps({"profile": profile, "profile_reason": why,
                                                  "notebooks": {r.name: asdict(r) for r in results}}, indent=1))
    progress.print(f"summary: {out / 'summary.md'}")
    if results[-1].status == "interrupted":
        progress.print(f"interrupted: {len(results)} of {len(nbs)} notebook(s) started; the rest did not run")
        return 130
    failed = [r for r in results if r.status != "ok"]
    if failed:
        progress.print(f"FAILED notebooks ({len(failed)} of {len(results)}):")
        for r in failed:
            progress.print(f"  {r.name}: {r.where()}: {r.error}")
        return 1
    return 0
