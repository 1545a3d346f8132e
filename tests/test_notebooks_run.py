"""``python -m vtonlab notebooks run``: one kernel at a time, progress, profile choice, failures, cleanup.

The notebooks here are written into ``tmp_path`` (a few cells each); no course notebook is run.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import nbformat
import psutil
import pytest

import vtonlab.commands.notebooks as nbcmd
from vtonlab import profiles
from vtonlab.__main__ import main
from vtonlab.checkpoints import cache_path, shipped_path

PID_CELL = "import os\nprint('kernel pid', os.getpid(), 'profile', os.environ['VTONLAB_PROFILE'])"


def write_notebook(path, cells, models=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if models is not None:
        nb.metadata["vtonlab"] = {"models": models}
    nbformat.write(nb, path)
    return path


def use_notebooks(monkeypatch, paths):
    monkeypatch.setattr(nbcmd, "notebook_paths", lambda root=None: list(paths))


def printed_kernel(out_dir, name):
    """(pid, profile) that the executed copy of notebook ``name`` printed in its first code cell."""
    nb = nbformat.read(out_dir / "notebooks" / name, as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    _, _, pid, _, profile = text.split()
    return int(pid), profile


def kernel_processes():
    """Live kernel processes below this one. A process a kernel forks carries the kernel's command line until it
    execs, so it is not counted as a kernel of its own: only kernels whose parent is not a kernel."""
    found = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if "ipykernel" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = p.ppid()
        except psutil.NoSuchProcess:
            pass
    return [pid for pid, parent in found.items() if parent not in found]


def test_kernel_count_skips_a_kernels_forked_child_but_not_a_second_kernel(tmp_path):
    """The sampler's rule: a fork of a kernel (same command line until it execs) is not a second kernel."""
    code = ("import os, sys, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\n"
            "print('ready', flush=True)\ntime.sleep(30)")
    procs = [subprocess.Popen([sys.executable, "-c", code, "ipykernel_launcher"], stdout=subprocess.PIPE, text=True)]
    try:
        assert procs[0].stdout.readline().strip() == "ready"
        assert kernel_processes() == [procs[0].pid]
        procs.append(subprocess.Popen([sys.executable, "-c", code, "ipykernel_launcher"], stdout=subprocess.PIPE,
                                      text=True))
        assert procs[1].stdout.readline().strip() == "ready"
        assert sorted(kernel_processes()) == sorted(p.pid for p in procs)
    finally:
        for p in procs:
            for child in psutil.Process(p.pid).children(recursive=True):
                child.kill()
            p.kill()
            p.wait()


class KernelSampler(threading.Thread):
    """Counts this process's live kernel children every 20 ms while a run goes on."""

    def __init__(self):
        super().__init__(daemon=True)
        self.max_alive, self.seen, self.done = 0, set(), threading.Event()

    def run(self):
        while not self.done.is_set():
            alive = kernel_processes()
            self.max_alive = max(self.max_alive, len(alive))
            self.seen.update(alive)
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def test_one_kernel_at_a_time_none_after_and_a_failure_does_not_stop_the_rest(tmp_path, monkeypatch, capsys):
    nbs = [write_notebook(tmp_path / "01_first.ipynb", [PID_CELL, "import time\ntime.sleep(0.5)"]),
           write_notebook(tmp_path / "02_fails.ipynb", [PID_CELL, "x = 1\nraise ValueError('boom on purpose')",
                                                        "print('never runs')"]),
           write_notebook(tmp_path / "03_last.ipynb", [PID_CELL, "from vtonlab.report import Summary\n"
                                                                 "Summary('03_last').add('answer', 42)"])]
    use_notebooks(monkeypatch, nbs)
    out = tmp_path / "results"
    env_before = dict(os.environ)
    with KernelSampler() as sampler:
        rc = main(["notebooks", "run", "--out", str(out), "--timeout", "120"])
    terminal = capsys.readouterr().out
    assert rc == 1, terminal

    pids = [printed_kernel(out, nb.name)[0] for nb in nbs]
    assert len(set(pids)) == 3, "every notebook gets a kernel of its own"
    assert set(pids) <= sampler.seen, "the sampler did not see the kernels: it would not catch two at once"
    assert sampler.max_alive == 1, f"{sampler.max_alive} kernels were alive at the same time"
    assert kernel_processes() == []
    for pid in pids:
        assert not psutil.pid_exists(pid), f"kernel {pid} still exists after the run"

    # the failure is reported with its cell and error; the notebook after it still ran
    summary = (out / "summary.md").read_text()
    assert "| 02_fails.ipynb | cell 3 of 4 (In [2]) | ValueError: boom on purpose |" in summary
    assert "| answer | 42 |" in summary and "| 03_last.ipynb |" in summary
    assert "02_fails.ipynb: cell 3 of 4 (In [2]): ValueError: boom on purpose" in terminal
    record = json.loads((out / "summary.json").read_text())["notebooks"]
    assert [record[nb.name]["status"] for nb in nbs] == ["ok", "failed", "ok"]
    assert record["02_fails.ipynb"]["cell"] == 3
    failed_copy = nbformat.read(out / "notebooks" / "02_fails.ipynb", as_version=4)
    assert failed_copy.cells[3].outputs == [], "the cell after the failing one must not have run"
    assert dict(os.environ) == env_before, "the runner must not change this process's environment"


def test_a_timeout_stops_the_kernel_and_temporary_files_are_removed(tmp_path, monkeypatch, capsys):
    tmp = tmp_path / "t"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    nb = write_notebook(tmp_path / "01_slow.ipynb", [PID_CELL, "import time\ntime.sleep(300)"])
    use_notebooks(monkeypatch, [nb])
    out = tmp_path / "results"
    start = time.monotonic()
    assert main(["notebooks", "run", "--out", str(out), "--timeout", "3"]) == 1
    assert time.monotonic() - start < 90
    record = json.loads((out / "summary.json").read_text())["notebooks"]["01_slow.ipynb"]
    assert record["status"] == "failed" and record["cell"] == 3
    assert record["error"].startswith("CellTimeoutError: A cell timed out"), record["error"]
    pid, _ = printed_kernel(out, nb.name)
    assert not psutil.pid_exists(pid), "the timed-out kernel is still running"
    assert made and all(p.startswith(str(tmp)) for p in made), "the runner made no temporary folder to check"
    assert list(tmp.iterdir()) == [], f"temporary files left behind: {list(tmp.iterdir())}"


def test_ctrl_c_stops_the_whole_run_and_its_kernel(tmp_path, monkeypatch, capsys):
    interrupt = "import os, signal, time\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(60)"
    nbs = [write_notebook(tmp_path / "01_interrupted.ipynb", [PID_CELL, interrupt]),
           write_notebook(tmp_path / "02_never.ipynb", [PID_CELL])]
    use_notebooks(monkeypatch, nbs)
    out = tmp_path / "results"
    start = time.monotonic()
    assert main(["notebooks", "run", "--out", str(out)]) == 130
    assert time.monotonic() - start < 50, "the interrupted cell ran on"
    record = json.loads((out / "summary.json").read_text())["notebooks"]
    assert list(record) == ["01_interrupted.ipynb"], "the run went on after Ctrl-C"
    assert record["01_interrupted.ipynb"]["status"] == "interrupted"
    summary = (out / "summary.md").read_text()
    assert "| 01_interrupted.ipynb | cell 3 of 3" in summary and "| stopped by SIGINT |" in summary
    pid, _ = printed_kernel(out, "01_interrupted.ipynb")
    assert not psutil.pid_exists(pid) and kernel_processes() == []
    assert "interrupted: 1 of 2 notebook(s) started" in capsys.readouterr().out


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_one_updating_line_with_the_notebooks_own_bars(tmp_cache, tmp_path, monkeypatch):
    shipped = shipped_path("gmm", "cpu").with_suffix(".json")
    shipped.parent.mkdir(parents=True)
    shipped.write_text(json.dumps({"name": "gmm", "history": {"steps": [1], "seconds": 148.9}}))
    cells = [PID_CELL,
             "import sys, time\nfor i in range(1, 4):\n"
             "    sys.stderr.write(f'\\rtraining {i}/3'); sys.stderr.flush(); time.sleep(0.4)",
             "from tqdm.notebook import tqdm\nfor _ in tqdm(range(5), desc='widgetbar', mininterval=0):\n"
             "    time.sleep(0.3)"]
    nb = write_notebook(tmp_path / "01_progress.ipynb", cells, models=["gmm", "gmm_ablation_tps_rgb"])
    use_notebooks(monkeypatch, [nb])
    term = FakeTerminal()
    monkeypatch.setattr("sys.stdout", term)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("VTONLAB_PROFILE", "ci")
    out = tmp_path / "results"
    assert main(["notebooks", "run", "--out", str(out), "--profile", "cpu"]) == 0
    text = term.getvalue()
    assert text.startswith("profile: cpu (from --profile)")
    assert printed_kernel(out, nb.name)[1] == "cpu", "the kernel did not get the chosen profile"
    assert ("    will load: gmm-cpu (shipped; training took 149 s); "
            "must train: gmm_ablation_tps_rgb (no shipped or cached checkpoint)\n") in text
    # everything between the plan line and the result line is ONE line, rewritten with carriage returns
    running = text.split("checkpoint)\n", 1)[1].split("    ok in", 1)[0]
    assert "\n" not in running and running.count("\r") > 5
    assert "\r  01_progress  cell 2 of 4" in running and "\r  01_progress  cell 4 of 4" in running
    assert "| training 3/3" in running, "stderr progress lines are not shown"
    assert "| widgetbar: 100% 5/5 [" in running, "tqdm widget bars are not shown"


def test_progress_line_plain_output_is_throttled_and_terminal_output_rewrites_one_line():
    now = [0.0]
    log = io.StringIO()
    plain = nbcmd.ProgressLine(log, tty=False, every=5.0, clock=lambda: now[0])
    for t, text in [(0, "a"), (1, "b"), (6, "c"), (7, "c"), (8, "d")]:
        now[0] = t
        plain.show(text)
    plain.show("cell 2", force=True)
    plain.print("done")
    assert log.getvalue() == "a\nc\ncell 2\ndone\n"

    term = io.StringIO()
    line = nbcmd.ProgressLine(term, tty=True, width=12, clock=lambda: 0.0)
    line.show("first")
    line.show("second, much longer than the terminal")
    line.print("done")
    assert term.getvalue() == "\rfirst\x1b[K\rsecond, muc\x1b[K\r\x1b[Kdone\n"


def test_model_plan_finds_shipped_and_cached_checkpoints_by_the_loaders_names(tmp_cache):
    shipped = shipped_path("gml", "ci").with_suffix(".json")
    cached = cache_path("clip", {"steps": 3}, "ci").with_suffix(".json")
    for path, seconds in ((shipped, 31.9), (cached, 7.0)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"history": {"seconds": seconds}}))
    plans = nbcmd.model_plan(["gml", "clip", "gmm", "gml_other"], "ci")
    assert [(p.name, p.source, p.train_seconds) for p in plans] == [
        ("gml", "shipped", 31.9), ("clip", "cached", 7.0), ("gmm", None, None), ("gml_other", None, None)]
    assert nbcmd.plan_line(plans) == ("will load: gml-ci (shipped; training took 32 s), clip-ci (cached; training took 7 s); "
                                      "must train: gmm (no shipped or cached checkpoint), "
                                      "gml_other (no shipped or cached checkpoint)")
    assert nbcmd.model_plan(["gml"], "cpu")[0].source is None, "a checkpoint of another profile is not a match"
    assert nbcmd.plan_line([]) is None


def test_course_declaration_of_notebook_04_names_the_checkpoints_it_loads():
    from vtonlab import gmm

    ci = profiles.get_profile("ci")
    expected = [gmm.checkpoint_name(gmm.GMMConfig.for_profile(ci, "cpvton"))]
    expected += [gmm.checkpoint_name(c) for c in gmm.ablation_configs(ci, seeds=gmm.ABLATION_SEEDS).values()]
    expected += [gmm.checkpoint_name(gmm.GMMConfig.for_profile(ci, "gml"))]
    assert list(nbcmd.COURSE_MODELS["04_geometric_matching"]) == expected, "update COURSE_MODELS with gmm.ABLATIONS"


def test_declared_models_reads_metadata_and_rejects_a_bad_declaration(tmp_path):
    nb = nbformat.v4.new_notebook()
    assert nbcmd.declared_models(tmp_path / "00_welcome.ipynb", nb) == ("demo",)
    assert nbcmd.declared_models(tmp_path / "99_new.ipynb", nb) == ()
    nb.metadata["vtonlab"] = {"models": ["parsing"]}
    assert nbcmd.declared_models(tmp_path / "00_welcome.ipynb", nb) == ("parsing",)
    nb.metadata["vtonlab"] = {"models": "parsing"}
    with pytest.raises(ValueError, match="99_new.ipynb: metadata vtonlab.models must be a list"):
        nbcmd.declared_models(tmp_path / "99_new.ipynb", nb)


def test_the_runner_resolves_auto_and_plans_without_importing_torch():
    code = ("import sys, vtonlab.commands.notebooks as n; name, why = n.choose_profile('auto'); "
            "n.plan_line(n.model_plan(n.COURSE_MODELS['04_geometric_matching'], name)); print(name, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [profiles.profile_name("auto"), "False"], "the runner keeps torch in memory"


def test_choose_profile_says_why(monkeypatch):
    monkeypatch.setenv("VTONLAB_PROFILE", "ci")
    assert nbcmd.choose_profile("cpu") == ("cpu", "from --profile")
    assert nbcmd.choose_profile(None) == ("ci", "from VTONLAB_PROFILE=ci")
    monkeypatch.setattr(nbcmd, "auto_profile", lambda: "gpu")
    assert nbcmd.choose_profile("auto") == ("gpu", "auto: a CUDA device is available")
    monkeypatch.delenv("VTONLAB_PROFILE")
    assert nbcmd.choose_profile(None) == ("gpu", "auto: a CUDA device is available")
    monkeypatch.setattr(nbcmd, "auto_profile", lambda: "cpu")
    assert nbcmd.choose_profile(None) == ("cpu", "auto: no CUDA device")
    monkeypatch.setenv("VTONLAB_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        nbcmd.choose_profile(None)


def test_only_matching_nothing_is_an_error_naming_the_option(tmp_path, monkeypatch, capsys):
    use_notebooks(monkeypatch, [write_notebook(tmp_path / "01_a.ipynb", ["1"])])
    assert main(["notebooks", "run", "--out", str(tmp_path / "r"), "--only", "zzz"]) == 2
    assert "--only zzz" in capsys.readouterr().err
