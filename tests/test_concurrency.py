"""Several processes at once, and processes killed midway: nothing is corrupted, nothing hangs, nothing is lost.

Every test starts real processes (``python -c``) with a timeout, so a regression fails instead of hanging.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from vtonlab.checkpoints import CheckpointError, load_checkpoint, load_or_train, save_checkpoint, shipped_path
from vtonlab.data import layouts as L
from vtonlab.data.datasets import read_marker

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTONLAB_")}
    env.update(VTONLAB_CACHE=str(tmp_path / "cache"), VTONLAB_DATA=str(tmp_path / "data"), VTONLAB_PROGRESS="0",
               VTONLAB_PROFILE="ci", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def _start(script, *args, env):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=180):
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


# ------------------------------------------------------------------ checkpoints

SAVE_ROUNDS = """
import sys, torch
from vtonlab.checkpoints import load_checkpoint, save_checkpoint
path, tag, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(rounds):
    value = float(tag * 1000 + i)
    save_checkpoint(path, {"w": torch.full((1 << 19,), value)}, name="race", config={"k": 1}, metrics={"value": value})
    c = load_checkpoint(path)  # must never see the weights of one save with the manifest of another
    w = c.tensors["w"]
    assert float(w[0]) == float(w[-1]) == c.metrics["value"], (float(w[0]), c.metrics)
print("ok")
"""


@pytest.mark.slow
def test_two_processes_saving_one_checkpoint_never_break_it(tmp_path):
    path = tmp_path / "race.safetensors"
    procs = [_start(SAVE_ROUNDS, path, tag, 25, env=_env(tmp_path)) for tag in (1, 2)]
    for rc, out, err in _finish(procs):
        assert rc == 0 and out.strip() == "ok", err[-2000:]
    c = load_checkpoint(path)
    assert float(c.tensors["w"][0]) in (1024.0, 2024.0)  # the last save of one of them, whole
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # every temporary file was renamed


TRAIN_ONCE = """
import os, sys, time, torch
from pathlib import Path
from vtonlab.checkpoints import load_or_train
counter, go = Path(sys.argv[1]), Path(sys.argv[2])
print("pid", os.getpid(), flush=True)
Path(str(go) + f".ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)

def train_fn():
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(2.0)  # long enough for the other process to ask meanwhile
    torch.manual_seed(0)
    return {"net": torch.nn.Linear(3, 2)}, {"score": 1.0}

ckpt = load_or_train("shared", {"width": 3}, train_fn, profile="ci")
print("source", ckpt.source, float(ckpt.tensors["net.weight"].sum()), flush=True)
"""


@pytest.mark.slow
def test_second_process_waits_for_the_first_ones_training_and_loads_it(tmp_path):
    counter, go = tmp_path / "trained.txt", tmp_path / "go"
    procs = [_start(TRAIN_ONCE, counter, go, env=_env(tmp_path)) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the processes did not start"
        time.sleep(0.05)
    go.touch()
    results = _finish(procs)
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    trainers = counter.read_text().split()
    assert len(trainers) == 1, f"trained {len(trainers)} times"
    by_source = {re.search(r"source (\w+)", out).group(1): (out, err) for _, out, err in results}
    assert set(by_source) == {"trained", "cache"}
    waiter_out, waiter_err = by_source["cache"]
    assert f"waiting for another process training shared for profile ci (pid {trainers[0]})" in waiter_err
    sums = {re.search(r"source \w+ (\S+)", out).group(1) for _, out, _ in results}
    assert len(sums) == 1  # the same weights


def _net():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_corrupt_cache_entry_is_retrained_and_corrupt_shipped_file_is_an_error(tmp_cache, capsys):
    calls = []

    def train_fn():
        calls.append(1)
        return {"net": _net()}, {"score": 1.0}

    first = load_or_train("m", {"w": 1}, train_fn, profile="ci")
    data = bytearray(first.path.read_bytes())
    data[-3] ^= 0xFF
    first.path.write_bytes(bytes(data))
    capsys.readouterr()
    second = load_or_train("m", {"w": 1}, train_fn, profile="ci")
    out = capsys.readouterr().out
    assert f"cache checkpoint {first.path} is unusable" in out and "training again" in out
    assert len(calls) == 2 and second.trained
    assert torch.equal(second.tensors["net.weight"], _net().weight.detach())
    first.path.with_suffix(".json").write_text("{truncated")  # a manifest cut short
    third = load_or_train("m", {"w": 1}, train_fn, profile="ci")
    assert len(calls) == 3 and third.trained and load_checkpoint(third.path).metrics == {"score": 1.0}

    shipped = shipped_path("m", "ci")
    save_checkpoint(shipped, {"net": _net()}, name="m", config={"w": 1, "profile": "ci"}, profile="ci")
    assert load_or_train("m", {"w": 1}, train_fn, profile="ci").source == "shipped"
    data = bytearray(shipped.read_bytes())
    data[-3] ^= 0xFF
    shipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape(str(shipped)) + ".*corrupt"):
        load_or_train("m", {"w": 1}, train_fn, profile="ci")
    assert len(calls) == 3 and shipped.exists()  # never retrained over, never removed
    assert not list(shipped.parent.glob(".*"))  # no lock file among the shipped checkpoints


# ------------------------------------------------------------------ SynthVTON renders

RENDER = """
import sys, time
import vtonlab.data.datasets as D
slow = float(sys.argv[3])
if slow:
    render = D._render_and_write
    def slowed(job):
        time.sleep(slow)
        return render(job)
    D._render_and_write = slowed  # inherited by the forked pool workers
D.ensure_synthvton(sys.argv[1], dict(layout="vitonhd", n_train=int(sys.argv[2]), n_test=2, seed=0, size=(32, 24),
                   n_poses=2), workers=2, progress=False)
print("done", flush=True)
"""


def _children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for_first_image(proc, folder: Path, pattern: str, limit_s: float = 120) -> None:
    """Until the render running in ``proc`` has written its first image (``folder.glob(pattern)``)."""
    deadline = time.monotonic() + limit_s
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the render did not start"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
def test_render_killed_midway_does_not_block_the_next_one(tmp_path):
    root = tmp_path / "synth"
    env = _env(tmp_path)
    first = _start(RENDER, root, 24, 0.4, env=env)
    try:
        _wait_for_first_image(first, tmp_path, ".synth.tmp-*/train/image/*.jpg")
        workers = _children(first.pid)
        assert workers, "the render runs in a pool of worker processes"
        assert f"{first.pid}" == (tmp_path / ".synth.lock").read_text().strip()  # the holder's pid
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = subprocess.run([sys.executable, "-c", RENDER, str(root), "24", "0"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "done" in second.stdout, second.stderr[-2000:]
    assert "removing" in second.stdout and f"(pid {first.pid})" in second.stdout
    assert read_marker(root)["n_train"] == 24
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    time.sleep(0.2)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]], \
        "workers of the killed render outlived it"


# ------------------------------------------------------------------ data generate

GENERATE = """
import sys, time
import vtonlab.data.datasets as D
render = D._render_and_write
def slowed(job):
    time.sleep(0.15)
    return render(job)
D._render_and_write = slowed
from vtonlab.__main__ import main
sys.exit(main(["data", "generate", "--out", sys.argv[1], "--n-train", "8", "--n-test", "2", "--size", "32x24",
               "--workers", "1"]))
"""


@pytest.mark.slow
def test_two_generate_runs_to_one_folder_one_wins(tmp_path):
    out = tmp_path / "ds"
    procs = [_start(GENERATE, out, env=_env(tmp_path)) for _ in range(2)]
    results = _finish(procs)
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, _, err in results if rc == 2)
    assert f"--out: {out} is not empty" in loser
    assert read_marker(out)["n_train"] == 8
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_generate_never_removes_a_file_put_in_the_folder_during_the_render(tmp_path):
    out = tmp_path / "ds"
    proc = _start(GENERATE, out, env=_env(tmp_path))
    try:
        _wait_for_first_image(proc, tmp_path, ".ds.tmp-*/train/image/*.jpg")
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    finally:
        ((rc, _, err),) = _finish([proc])
    assert rc == 2 and f"files appeared in {out} during the render; nothing was removed" in err, err
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["notes.txt"]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_generate_overwrite_replaces_only_synthvton(tmp_path, capsys):
    from vtonlab.__main__ import main

    args = ["--n-train", "2", "--n-test", "2", "--size", "32x24", "--workers", "1"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    assert main(["data", "generate", "--out", str(mine), "--overwrite", *args]) == 2
    err = capsys.readouterr().err
    assert f"--out: {mine} is not empty and holds no SynthVTON marker ({L.SYNTH_MARKER})" in err
    assert sorted(os.listdir(mine)) == ["keep.txt"]

    synth = tmp_path / "synth"
    assert main(["data", "generate", "--out", str(synth), "--seed", "1", *args]) == 0
    assert main(["data", "generate", "--out", str(synth), "--seed", "2", *args]) == 2  # no --overwrite: refused
    assert read_marker(synth)["seed"] == 1
    assert main(["data", "generate", "--out", str(synth), "--seed", "2", "--overwrite", *args]) == 0
    assert read_marker(synth)["seed"] == 2
    assert json.loads((synth / L.SYNTH_MARKER).read_text())["counts"]["test"] == 2
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
