import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from vtonlab.train import History, Trainer, list_checkpoints


class ToyData(torch.utils.data.Dataset):
    """Noisy linear regression samples as sample dicts."""

    def __init__(self, n=40):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x @ torch.randn(6, 2, generator=g) + 0.1 * torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "name": f"s{i}"}


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))


def step_fn(ctx, batch):
    model = ctx.modules["net"]
    # noise from the loop's generator and dropout from the global RNG: both must resume exactly
    noise = torch.randn(batch["x"].shape, generator=ctx.generator, device=ctx.device) * 0.01
    loss = ((model(batch["x"] + noise) - batch["y"]) ** 2).mean()
    ctx.optimize(loss, "net")
    return {"loss": loss, "lr": ctx.optimizers["net"].param_groups[0]["lr"]}


def make_trainer(max_steps, ckpt_dir=None, every=None, step=step_fn):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    return model, Trainer({"net": model}, {"net": opt}, step, ToyData(), batch_size=8, max_steps=max_steps,
                          schedulers={"net": sched}, checkpoint_dir=ckpt_dir, checkpoint_every=every,
                          seed=3, progress=False, mixed_precision="no")


def test_training_reduces_loss():
    _, trainer = make_trainer(60)
    hist = trainer.fit()
    assert len(hist) == 60 and hist.steps[-1] == 60
    assert hist.last("loss", 5) < 0.5 * hist.losses["loss"][0]
    assert hist.losses["lr"][-1] < hist.losses["lr"][0]  # the scheduler was stepped


def test_interrupted_run_resumes_bit_identical(tmp_path):
    # uninterrupted reference: 13 steps (epochs of 5 steps, so resume lands mid-epoch)
    ref_model, ref = make_trainer(13)
    ref_hist = ref.fit()

    calls = {"n": 0}

    def crashing_step(ctx, batch):
        calls["n"] += 1
        if ctx.step == 9:
            raise KeyboardInterrupt  # the student pressed stop during step 10
        time.sleep(0.03)  # slow steps: their time must survive the interruption
        return step_fn(ctx, batch)

    _, first = make_trainer(13, tmp_path, every=4, step=crashing_step)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000008"]

    resumed_model, second = make_trainer(13, tmp_path, every=4)
    hist = second.fit()
    assert second.step == 13
    for (k, a), b in zip(ref_model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"parameter {k} differs after resume"
    assert hist.steps == ref_hist.steps and hist.losses["loss"] == ref_hist.losses["loss"]
    # the training time counts the 8 slow steps of the interrupted part (saved at step 8), not only the last part's
    assert hist.seconds >= 8 * 0.03
    # the final checkpoint exists and a third fit() is a no-op
    assert list_checkpoints(tmp_path)[-1].name == "step_00000013"
    _, third = make_trainer(13, tmp_path, every=4)
    assert len(third.fit()) == 13


def test_resume_refuses_other_settings(tmp_path):
    _, t = make_trainer(4, tmp_path)
    t.fit()
    model = make_model()
    opt = torch.optim.Adam(model.parameters())
    other = Trainer({"net": model}, {"net": opt}, step_fn, ToyData(), batch_size=4, max_steps=8,
                    checkpoint_dir=tmp_path, seed=3, progress=False)
    with pytest.raises(RuntimeError, match="batch_size"):
        other.fit()


def test_truncated_training_checkpoint_is_named(tmp_path):
    _, t = make_trainer(4, tmp_path)
    t.fit()
    ck = list_checkpoints(tmp_path)[-1]
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    _, again = make_trainer(8, tmp_path)
    with pytest.raises(RuntimeError, match=r"step_00000004.*truncated"):
        again.fit()


def test_callable_data_and_frozen_module():
    frozen = nn.Linear(3, 3).requires_grad_(False)
    w0 = frozen.weight.clone()
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def data(step, g):
        x = torch.randn(8, 3, generator=g)
        return {"x": x, "y": x.sum(1, keepdim=True)}

    def step(ctx, b):
        loss = ((ctx.modules["net"](ctx.modules["frozen"](b["x"])) - b["y"]) ** 2).mean()
        ctx.optimize(loss)
        return {"loss": loss}

    t = Trainer({"net": model, "frozen": frozen}, {"net": opt}, step, data, max_steps=30, progress=False)
    t.fit()
    assert torch.equal(frozen.weight, w0)
    # the batch at a step comes from a generator seeded by (seed, step) alone, computed independently here
    expected = torch.randn(8, 3, generator=torch.Generator().manual_seed(0 * 1_000_003 + 5))
    assert torch.equal(t.batch_at(5)["x"], expected)
    assert not torch.equal(t.batch_at(6)["x"], expected)


def test_dataset_batches_walk_a_seeded_permutation_of_each_epoch():
    # 44 samples, batch 8: 5 batches per epoch, 4 samples left out; epoch e is torch.randperm seeded by (seed, e)
    data = ToyData(n=44)
    model = make_model()
    t = Trainer({"net": model}, {"net": torch.optim.SGD(model.parameters(), lr=0.1)}, step_fn, data, batch_size=8,
                max_steps=10, seed=3, progress=False)
    orders = []
    for epoch in (0, 1):
        order = torch.randperm(44, generator=torch.Generator().manual_seed(3 * 1_000_003 + epoch))
        names = [n for step in range(5 * epoch, 5 * epoch + 5) for n in t.batch_at(step)["name"]]
        assert names == [f"s{i}" for i in order[:40].tolist()]
        assert torch.equal(t.batch_at(5 * epoch + 2)["x"], data.x[order[16:24]])
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])  # each epoch reshuffles


def test_clear_errors():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer({"m": model}, {"m": opt}, step_fn, ToyData(), max_steps=3)
    with pytest.raises(TypeError, match="nn.Module"):
        Trainer({"m": "not a module"}, {}, step_fn, ToyData(), batch_size=2, max_steps=3)
    t = Trainer({"net": make_model()}, {"net": opt}, step_fn, ToyData(n=5), batch_size=8, max_steps=3, progress=False)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        t.fit()

    def bad_step(ctx, b):
        ctx.optimize(torch.tensor(float("nan"), requires_grad=True), "net")

    t = Trainer({"net": make_model()}, {"net": opt}, bad_step, ToyData(), batch_size=8, max_steps=3, progress=False)
    with pytest.raises(FloatingPointError, match="step 0"):
        t.fit()


def test_history_roundtrip_and_plot():
    h = History()
    for i in range(1, 51):
        h.append(i, {"loss": 1.0 / i, **({"aux": 2.0} if i % 2 else {})})
    d = json.loads(json.dumps(h.to_dict()))
    h2 = History.from_dict(d)
    assert h2.steps == h.steps and h2.losses["loss"] == h.losses["loss"]
    assert h2.losses["aux"][:49] == h.losses["aux"] and len(h2.losses["aux"]) == 50
    assert len(h.losses["aux"]) == 49  # nan-padded up to the last logged step
    fig = h.plot()
    assert fig.axes[0].get_xlabel() == "step"
    assert len(History.from_dict(h.to_dict(max_points=10)).steps) == 10


SCRIPT = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from safetensors.torch import save_file
    from vtonlab.train import Trainer
    sys.path.insert(0, {tests!r})
    from test_train import ToyData

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(ctx, b):
        loss = ((ctx.modules["net"](b["x"]) - b["y"]) ** 2).mean()
        ctx.optimize(loss, "net")
        return {{"loss": loss}}

    t = Trainer({{"net": model}}, {{"net": opt}}, step, ToyData(), batch_size=int(sys.argv[2]), max_steps=10,
                seed=5, progress=False, mixed_precision="no", checkpoint_dir=sys.argv[3])
    t.fit()
    rank = t.accelerator.process_index
    save_file({{k: v.contiguous() for k, v in t.unwrapped()["net"].state_dict().items()}},
              sys.argv[1] + f"/rank{{rank}}_of{{t.world_size}}.safetensors")
''')


def free_port() -> int:
    """A TCP port no process listens on now (the OS picks it), so parallel runs do not collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_accelerate_launch_matches_single_process(tmp_path):
    """Two processes on a CPU-only machine (gloo DDP) with 4 samples per process equal one process
    with 8 samples per step: the data is sharded and gradients are averaged.

    accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process unless MPI is set up;
    `launch --multi_gpu --num_processes 2` on a machine without CUDA starts two gloo processes."""
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    out = subprocess.run(launch + [str(script), str(tmp_path), "4", str(tmp_path / "ck2")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "rank1_of2.safetensors").exists(), "accelerate did not start two processes"
    single = subprocess.run([sys.executable, str(script), str(tmp_path), "8", str(tmp_path / "ck1")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    r0 = load_file(str(tmp_path / "rank0_of2.safetensors"))
    r1 = load_file(str(tmp_path / "rank1_of2.safetensors"))
    one = load_file(str(tmp_path / "rank0_of1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), "DDP replicas diverged"
        assert torch.allclose(r0[k], one[k], atol=1e-5), f"{k}: 2-process run differs from 1 process"
    # both ranks wrote their RNG state into the shared checkpoint
    ck = sorted((tmp_path / "ck2").iterdir())[-1]
    assert (ck / "rng_rank0.safetensors").exists() and (ck / "rng_rank1.safetensors").exists()


def test_native_bf16_detection_and_warning_on_emulating_cpus(monkeypatch):
    import vtonlab.train as T

    assert T.cpu_has_native_bf16("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16\n")
    assert T.cpu_has_native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not T.cpu_has_native_bf16("flags : fpu sse2 avx2 avx512f avx512bw\n")  # AVX-512 without BF16
    assert not T.cpu_has_native_bf16("model name : some cpu\n")
    if torch.cuda.is_available():
        return
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    with pytest.warns(UserWarning, match="emulated and several times slower"):
        Trainer({"net": model}, {"net": opt}, step_fn, ToyData(), batch_size=8, max_steps=1, progress=False,
                mixed_precision="bf16", desc="toy")
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer({"net": model}, {"net": opt}, step_fn, ToyData(), batch_size=8, max_steps=1, progress=False,
                mixed_precision="bf16", desc="toy")


def test_unwrapped_modules_compute_in_float32_after_bf16_training():
    """The metrics stored with a checkpoint must be those of the model as loaded: no autocast left on forward."""
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    trainer = Trainer({"net": model}, {"net": opt}, step_fn, ToyData(), batch_size=8, max_steps=2, progress=False,
                      mixed_precision="bf16", desc="toy")
    trainer.fit()
    net = trainer.unwrapped()["net"].eval()
    x = torch.randn(5, 6)
    plain = net[3](net[2](net[1](net[0](x))))  # the same layers called one by one, outside any autocast
    assert torch.equal(net(x), plain)
