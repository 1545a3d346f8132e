"""Odd inputs and settings: half-precision grids, two precisions in one process, mismatched resumes,
malformed manifests, bad command options, and where a non-editable install writes."""

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from vtonlab import paths, tps
from vtonlab.__main__ import main
from vtonlab.checkpoints import CheckpointError, cache_path, load_checkpoint, save_checkpoint
from vtonlab.train import Trainer

# ------------------------------------------------------------------ TPS grids under bf16 autocast


def test_sampling_grids_stay_float32_under_bf16_autocast():
    size = (256, 192)
    identity = tps.pixel_grid(size)  # float32
    fixed = tps.FixedGridTPS(5, 1.0)
    ctrl = tps.control_grid(5)[None]
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        offsets = nn.Linear(4, 50)(torch.zeros(1, 4)) * 0  # what a regressor yields under autocast: bf16
        assert offsets.dtype == torch.bfloat16
        grids = {
            "FixedGridTPS": fixed(offsets.view(1, 2, 25), size),
            "sampling_grid": tps.sampling_grid(ctrl.bfloat16(), ctrl.bfloat16(), size),
            "affine_sampling_grid": tps.affine_sampling_grid(theta.bfloat16(), size),
        }
    reference = {"FixedGridTPS": identity[None], "sampling_grid": tps.sampling_grid(ctrl, ctrl, size),
                 "affine_sampling_grid": tps.affine_sampling_grid(theta, size)}
    for name, grid in grids.items():
        assert grid.dtype == torch.float32, name
        assert torch.equal(grid, reference[name]), f"{name}: max error {(grid - reference[name]).abs().max():.2e}"
    assert torch.equal(grids["FixedGridTPS"][0], identity)
    # a non-trivial warp computed under autocast equals the float32 one to float32 precision
    off = torch.randn(2, 2, 25, generator=torch.Generator().manual_seed(0)) * 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped = fixed(off, (64, 48))
    assert warped.dtype == torch.float32 and torch.equal(warped, fixed(off, (64, 48)))
    img = torch.rand(1, 3, 16, 12).bfloat16()
    assert tps.warp_image(img, ctrl, ctrl).dtype == torch.bfloat16  # a bf16 image stays bf16


# ------------------------------------------------------------------ two precisions in one process


class Probe(nn.Module):
    """Records the dtype its layer computes in."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen: set = set()

    def forward(self, x):
        y = self.lin(x)
        self.seen.add(y.dtype)
        return y


def _probe_trainer(mixed_precision):
    torch.manual_seed(0)
    probe = Probe()

    def step(ctx, batch):
        loss = ctx.modules["p"](batch).float().pow(2).mean()
        ctx.optimize(loss, "p")
        return {"loss": loss}

    t = Trainer({"p": probe}, {"p": torch.optim.SGD(probe.parameters(), lr=0.1)}, step,
                lambda s, g: torch.randn(2, 4, generator=g), max_steps=2, progress=False,
                mixed_precision=mixed_precision)
    return probe, t


def test_two_trainers_with_different_mixed_precision_in_one_process():
    bf16, t_bf16 = _probe_trainer("bf16")
    full, t_full = _probe_trainer("no")  # built after the bf16 one: accelerate's state is per process
    t_bf16.fit()
    t_full.fit()
    again, t_again = _probe_trainer("bf16")
    t_again.fit()
    assert bf16.seen == {torch.bfloat16} and again.seen == {torch.bfloat16}
    assert full.seen == {torch.float32}
    assert (t_bf16.mixed_precision, t_full.mixed_precision, t_again.mixed_precision) == ("bf16", "no", "bf16")
    with pytest.raises(ValueError, match="mixed_precision: expected one of"):
        _probe_trainer("bf32")


# ------------------------------------------------------------------ resume must continue the same run


class Rows(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


def _rows_trainer(n, max_steps, folder, stop_at=None):
    torch.manual_seed(0)
    net = nn.Linear(3, 1)

    def step(ctx, batch):
        if ctx.step == stop_at:
            raise KeyboardInterrupt  # an interrupted run
        loss = ctx.modules["net"](batch["x"]).pow(2).mean()
        ctx.optimize(loss, "net")
        return {"loss": loss}

    return Trainer({"net": net}, {"net": torch.optim.SGD(net.parameters(), lr=0.1)}, step, Rows(n), batch_size=4,
                   max_steps=max_steps, checkpoint_dir=folder, checkpoint_every=2, progress=False, mixed_precision="no")


def test_resume_refuses_other_max_steps_or_data_length(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _rows_trainer(16, 6, tmp_path, stop_at=4).fit()
    ckpt = tmp_path / "step_00000004"
    with pytest.raises(RuntimeError, match=rf"{ckpt} was written with max_steps=6; this run has max_steps=10"):
        _rows_trainer(16, 10, tmp_path).fit()
    with pytest.raises(RuntimeError, match=rf"{ckpt} was written with data_length=16; this run has data_length=20"):
        _rows_trainer(20, 6, tmp_path).fit()
    resumed = _rows_trainer(16, 6, tmp_path)
    assert len(resumed.fit()) == 6 and resumed.step == 6


# ------------------------------------------------------------------ manifests


@pytest.mark.parametrize("field,value,message", [
    ("config", [1, 2], "'config' must be a JSON object .* it is a list"),
    ("config", None, "'config' must be a JSON object .* it is a NoneType"),
    ("history", {"steps": [1, 2], "losses": {"loss": [1.0]}, "seconds": "x"}, "malformed 'history' .*'seconds'"),
    ("history", {"steps": ["a"], "losses": {}}, "malformed 'history' .*'steps' is not a list of integers"),
    ("history", {"steps": [1], "losses": {"loss": [1.0, 2.0]}}, r"malformed 'history' .*has 2 values for 1 steps"),
    ("history", [1, 2], "malformed 'history' .*it is a list"),
    ("metrics", [0.5], "'metrics' must be a JSON object"),
])
def test_malformed_manifest_fields_name_the_file(tmp_path, field, value, message):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, name="m", config={"a": 1})
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest[field] = value
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"{path.with_suffix('.json')}.*{message}"):
        load_checkpoint(path)


# ------------------------------------------------------------------ data generate: clear errors before any work

ARGS = ["--n-train", "2", "--n-test", "2", "--size", "32x24", "--workers", "1"]


def test_generate_bad_options_fail_before_any_work(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "real"
    target.mkdir()
    (work / "link").symlink_to(target)
    monkeypatch.chdir(work)
    cases = [
        (["--out", "."], "--out: '.' names no folder of its own"),
        (["--out", "link"], "--out: link is a symbolic link (to"),
        (["--out", "new", "--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
        (["--out", "new", "--n-test", "0"], "--n-test: expected an integer >= 1, got 0"),
    ]
    for extra, message in cases:
        assert main(["data", "generate", *ARGS, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    monkeypatch.setenv("VTONLAB_WORKERS", "abc")
    assert main(["data", "generate", "--n-train", "2", "--n-test", "2", "--size", "32x24", "--out", "new"]) == 2
    assert "VTONLAB_WORKERS: expected a positive number of rendering processes, got 'abc'" in capsys.readouterr().err
    assert sorted(os.listdir(work)) == ["link"] and not os.listdir(target)  # nothing created, nothing rendered


# ------------------------------------------------------------------ where a non-editable install writes


def test_non_editable_install_writes_to_user_folders(tmp_path, monkeypatch):
    for var in ("VTONLAB_DATA", "VTONLAB_CACHE", "VTONLAB_RESULTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert paths.is_checkout()  # this test runs from the repository
    assert paths.cache_dir() == paths.repo_root() / "data" / "cache"
    assert paths.results_dir() == paths.repo_root() / "results"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setattr(paths, "is_checkout", lambda: False)  # as in site-packages
    assert paths.cache_dir() == tmp_path / "xdg-cache" / "vtonlab"
    assert paths.data_dir() == tmp_path / "xdg-data" / "vtonlab"
    assert paths.results_dir() == tmp_path / "xdg-data" / "vtonlab" / "results"
    assert paths.shipped_checkpoints_dir() == tmp_path / "xdg-data" / "vtonlab" / "checkpoints"
    assert cache_path("gmm", {"a": 1}, "ci").is_relative_to(tmp_path / "xdg-cache" / "vtonlab" / "checkpoints")
    for folder in (paths.cache_dir(), paths.data_dir(), paths.results_dir()):
        assert not folder.is_relative_to(paths.repo_root())
    monkeypatch.setenv("VTONLAB_CACHE", str(tmp_path / "mine"))  # the variables still win
    assert paths.cache_dir() == Path(tmp_path / "mine")
