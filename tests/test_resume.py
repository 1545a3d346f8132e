"""``python -m vtonlab train``: Ctrl-C saves a line, not a traceback, and the rerun resumes to the same weights."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vtonlab import demo
from vtonlab.profiles import get_profile
from vtonlab.train import Trainer, resumable, training_run

REPO = Path(__file__).resolve().parents[1]

# `python -m vtonlab train demo --profile ci`, with each step slowed by 30 ms so that an interrupt
# after the first periodic checkpoint always lands mid-run, however fast the machine.
SLOWED_CLI = """
import runpy, sys, time
import vtonlab.demo as d
step = d.denoise_step
def slowed(ctx, batch):
    time.sleep(0.03)
    return step(ctx, batch)
d.denoise_step = slowed
sys.argv = ["vtonlab", "train", "demo", "--profile", "ci"]
runpy.run_module("vtonlab", run_name="__main__", alter_sys=True)
"""


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTONLAB_")}
    env.update(VTONLAB_CACHE=str(tmp_path / "cache"), VTONLAB_DATA=str(tmp_path / "data"), VTONLAB_PROGRESS="0",
               VTONLAB_CHECKPOINT_EVERY="5", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _run(env, timeout=120):
    return subprocess.run([sys.executable, "-c", SLOWED_CLI], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_interrupted_train_command_resumes_to_the_uninterrupted_weights(tmp_path):
    env = _env(tmp_path)
    state = tmp_path / "cache" / "train-state"
    proc = subprocess.Popen([sys.executable, "-c", SLOWED_CLI], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(state.glob("demo-ci-*/trainer1-*/step_*/trainer.json")):
            assert proc.poll() is None, f"the run ended before its first periodic checkpoint:\n{proc.communicate()}"
            assert time.monotonic() < deadline, "no periodic checkpoint within 90 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: demo saved at step "), err
    saved = int(re.search(r"saved at step (\d+)", lines[0]).group(1))
    assert saved % 5 == 0 and 5 <= saved < 60
    assert "python -m vtonlab train demo --profile ci" in lines[0] and str(state) in lines[0]
    assert not list((tmp_path / "cache" / "checkpoints").glob("*.safetensors"))  # nothing finished

    second = _run(env)
    assert second.returncode == 0, second.stderr
    assert f"resuming demo from step {saved} " in second.stdout, second.stdout
    assert not list(state.glob("demo-ci-*")), "the state of a finished run is removed"
    (final,) = (tmp_path / "cache" / "checkpoints").glob("demo-ci-*.safetensors")
    resumed = load_file(str(final))

    # the same training, uninterrupted, in this process
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, history = demo.train(demo.config_for(get_profile("ci")), progress=False, profile=get_profile("ci"))
    finally:
        torch.set_num_threads(threads)
    reference = {f"denoiser.{k}": v for k, v in model.state_dict().items()}
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), f"{key} differs between the resumed and the uninterrupted run"


def test_training_run_gives_trainers_a_folder_and_removes_it_on_success(tmp_path):
    config = dict(demo.config_for(get_profile("ci")), steps=6)
    with resumable(tmp_path, every=2) as session:
        with pytest.raises(KeyboardInterrupt), training_run("demo-key", label="demo"):
            calls = {"n": 0}

            def stop_at_5(ctx, batch):
                calls["n"] += 1
                if ctx.step == 4:
                    raise KeyboardInterrupt
                return demo.denoise_step(ctx, batch)

            model = demo.TinyDenoiser(config["width"])
            opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
            t = Trainer({"denoiser": model}, {"denoiser": opt}, stop_at_5,
                        demo.make_batch_fn(config["batch"], config["size"], config["sigma"]),
                        max_steps=6, seed=0, progress=False, desc="denoiser", mixed_precision="no")
            assert t.checkpoint_dir == tmp_path / "demo-key" / "trainer1-denoiser" and t.checkpoint_every == 2
            t.fit()
        assert session.last_saved == ("demo", tmp_path / "demo-key" / "trainer1-denoiser" / "step_00000004", 4)
        assert (tmp_path / "demo-key").is_dir()  # kept after an exception, to resume from
        with training_run("demo-key", label="demo"):
            _, history = demo.train(config, progress=False)
        assert history.steps[0] == 1 and len(history) == 6  # the resumed history holds the first steps too
        assert not (tmp_path / "demo-key").exists()  # removed once the run ended normally
    # outside resumable(), a Trainer has no checkpoint folder unless given one
    _, plain = make_plain()
    assert plain.checkpoint_dir is None


def make_plain():
    model = demo.TinyDenoiser(4)
    opt = torch.optim.Adam(model.parameters())
    return model, Trainer({"m": model}, {"m": opt}, demo.denoise_step, demo.make_batch_fn(2, 8, 0.5), max_steps=1,
                          progress=False, mixed_precision="no")


def test_bad_checkpoint_interval_is_named(monkeypatch, tmp_path):
    from vtonlab.__main__ import main

    monkeypatch.setenv("VTONLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("VTONLAB_CHECKPOINT_EVERY", "ten")
    with pytest.raises(ValueError, match="VTONLAB_CHECKPOINT_EVERY.*'ten'"):
        with resumable(tmp_path):
            pass
    assert main(["train", "demo", "--profile", "ci"]) == 2
    assert not (tmp_path / "checkpoints").exists()
