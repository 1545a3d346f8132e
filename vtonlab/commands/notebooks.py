"""``python -m vtonlab notebooks``: list the course, or execute every notebook headlessly.

``python -m vtonlab notebooks run`` (what ``make reproduce`` calls) executes each notebook in
``notebooks/`` top to bottom in the active profile, writes the executed copy to
``results/notebooks/``, and gathers the closing ``Summary`` table of each into
``results/summary.md`` (plus ``results/summary.json`` with wall times).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from vtonlab import paths


def notebook_paths(root: Path | None = None) -> list[Path]:
    root = root or paths.repo_root() / "notebooks"
    return sorted(p for p in root.glob("[0-9][0-9]_*.ipynb"))


def register(sub) -> None:
    p = sub.add_parser("notebooks", help="list the notebooks, or run them all headlessly (make reproduce)")
    p.add_argument("action", choices=["list", "run"], help="list: the course in order; run: execute every notebook")
    p.add_argument("--out", default=None, help="results folder (default: results/)")
    p.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name contains one of these")
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


def run(args) -> int:
    nbs = notebook_paths()
    if not nbs:
        raise FileNotFoundError(f"no notebooks found in {paths.repo_root() / 'notebooks'}")
    if args.action == "list":
        for nb in nbs:
            print(f"{nb.name:40s} {_title(nb)}")
        return 0

    import tempfile

    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from vtonlab.profiles import get_profile
    from vtonlab.report import collect

    out = Path(args.out) if args.out else paths.results_dir()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ["VTONLAB_RESULTS_DIR"] = str(out.resolve())
    profile = get_profile()
    os.environ["VTONLAB_PROFILE"] = profile.name  # the kernels inherit it
    if args.only:
        nbs = [nb for nb in nbs if any(s in nb.name for s in args.only)]
    timings, failed = {}, []
    for nb_path in nbs:
        print(f"[{profile.name}] running {nb_path.name} ...", flush=True)
        nb = nbformat.read(nb_path, as_version=4)
        # IPC transport: kernels started one after another never race for TCP ports
        km = KernelManager(kernel_name="python3", transport="ipc",
                           ip=os.path.join(tempfile.mkdtemp(prefix="vtonlab-kernel-"), "k"))
        client = NotebookClient(nb, km=km, timeout=args.timeout, startup_timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(nb_path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as err:
            status = "failed"
            failed.append(nb_path.name)
            print(str(err)[-2000:])
        timings[nb_path.name] = {"seconds": round(time.perf_counter() - start, 1), "status": status}
        nbformat.write(nb, out / "notebooks" / nb_path.name)
        print(f"    {status} in {timings[nb_path.name]['seconds']} s -> {out / 'notebooks' / nb_path.name}", flush=True)
    summary = collect(out)
    summary += "\n## Wall time per notebook\n\n| notebook | seconds | status |\n|---|---|---|\n"
    summary += "\n".join(f"| {k} | {v['seconds']} | {v['status']} |" for k, v in timings.items()) + "\n"
    (out / "summary.md").write_text(summary)
    (out / "summary.json").write_text(json.dumps({"profile": profile.name, "notebooks": timings}, indent=1))
    print(f"summary: {out / 'summary.md'}")
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}")
        return 1
    return 0
