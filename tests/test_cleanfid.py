"""FID/KID through clean-fid (mode="clean"), as LaDI-VTON's evaluation computes them.

Checks that vtonlab's and clean-fid's Fréchet distance and KID agree on the same features, that
the LaDI-VTON protocol goes through clean-fid's resizer (PIL bicubic to 299x299 on 8-bit images),
and that clean-fid's own TorchScript Inception is picked up from the torch cache without a download.
"""

import urllib.request

import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid_fid
from cleanfid import resize as cleanfid_resize
from PIL import Image
from torch import nn
from torchvision.utils import save_image

import vtonlab.metrics as M
from vtonlab.metrics import weights as W
from vtonlab.metrics.distribution import cleanfid_batch, quantise


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache: no official weights unless a test places them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _flat(d: int) -> M.FeatureExtractor:
    """Features = the pixels of (N, 3, 2, 2) images: the same features reach every implementation."""
    return M.from_module(lambda x: x.flatten(1).double(), short="flat", extractor="pixels", weights="none",
                         num_features=d)


def _sets(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, 3, 2, 2, generator=g, dtype=torch.float64) * 0.6
    gen = (torch.rand(n, 3, 2, 2, generator=g, dtype=torch.float64) * 0.5 + 0.2 * ref.roll(1, 0)).clamp(0, 1)
    return ref, gen


def test_frechet_distance_agrees_with_cleanfid():
    ref, gen = _sets()
    fr, fg = ref.flatten(1).numpy(), gen.flatten(1).numpy()
    expected = cleanfid_fid.frechet_distance(fg.mean(0), np.cov(fg, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False))
    expected_tm = cleanfid_fid.fid_from_feats(fg, fr)  # clean-fid's own helper gives the same
    assert expected == pytest.approx(expected_tm, rel=1e-9) and expected > 0.05
    ours_torchmetrics = M.fid_kid(ref, gen, _flat(12), kid_subsets=1, kid_subset_size=len(ref))[0]
    assert ours_torchmetrics.value == pytest.approx(expected, rel=1e-5)
    ours_clean = M.CleanFIDMetrics(_flat(12))
    ours_clean.reference_features = fr
    assert ours_clean.score_features(fg)[0].value == pytest.approx(expected, rel=1e-9)


def test_kid_agrees_with_cleanfid():
    ref, gen = _sets()
    fr, fg = ref.flatten(1).numpy(), gen.flatten(1).numpy()
    # whole sets, one subset: the estimate does not depend on the draw
    np.random.seed(0)
    whole = cleanfid_fid.kernel_distance(fr, fg, num_subsets=1, max_subset_size=len(fr))
    tm = M.fid_kid(ref, gen, _flat(12), kid_subsets=1, kid_subset_size=len(ref))[1]
    assert tm.value == pytest.approx(whole, rel=1e-3, abs=1e-6) and abs(whole) > 1e-4
    dm = M.CleanFIDMetrics(_flat(12), kid_subset_size=len(ref))
    dm.reference_features = fr
    kid = dm.score_features(fg)[1]
    assert kid.value == pytest.approx(whole, rel=1e-9) and kid.std is None and "one subset" in kid.note
    # random subsets: the same draws as clean-fid's own loop under the same numpy seed
    dm = M.CleanFIDMetrics(_flat(12), kid_subsets=7, kid_subset_size=10, seed=3)
    dm.reference_features = fr
    kid = dm.score_features(fg)[1]
    np.random.seed(3)
    expected = cleanfid_fid.kernel_distance(fr, fg, num_subsets=7, max_subset_size=10)
    assert kid.value == pytest.approx(expected, rel=1e-9)
    per_subset = dm.kid_subsets_of(fr, fg)
    assert len(per_subset) == 7 and kid.std == pytest.approx(per_subset.std(ddof=1)) and kid.std > 0
    assert "7 subsets of 10" in kid.note
    state = np.random.get_state()[1].copy()
    dm.kid_subsets_of(fr, fg)
    assert (np.random.get_state()[1] == state).all()  # the global numpy generator is restored


def test_quantise_rounds_like_a_saved_png(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 7, 5, generator=g)
    x[:, 0, 0] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255])  # exact halves round up
    save_image(x, tmp_path / "x.png")
    assert (quantise(x) == np.asarray(Image.open(tmp_path / "x.png").convert("RGB"))).all()


def _pil_bicubic_299(image: torch.Tensor) -> np.ndarray:
    """An independent transcription of clean-fid's "clean" resize: 8-bit image, each channel resized as a
    float ('F' mode) image with PIL bicubic to 299x299, clipped, not re-quantised. -> (299, 299, 3)."""
    u8 = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    chans = [np.asarray(Image.fromarray(u8[:, :, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
             for c in range(3)]
    return np.stack(chans, axis=2).clip(0, 255)


def test_cleanfid_batch_is_pil_bicubic_not_torch():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 24, 18, generator=g)
    batch = cleanfid_batch(x)
    assert batch.shape == (2, 3, 299, 299) and batch.dtype == torch.float32
    expected = torch.from_numpy(np.stack([_pil_bicubic_299(im) for im in x])).permute(0, 3, 1, 2)
    assert torch.allclose(batch, expected, atol=1e-4)
    torch_resized = torch.nn.functional.interpolate(x * 255, size=(299, 299), mode="bicubic", align_corners=False)
    assert (batch - torch_resized).abs().max() > 1.0  # a different resize would not pass the check above
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cleanfid_batch([x[0, :2]])


def _faces(n: int, seed: int, size=(40, 30)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 5, 4, generator=g)
    imgs = torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)
    imgs = (imgs + 0.05 * torch.rand(n, 3, *size, generator=g)).clamp(0, 1)
    return {f"{i:03d}.png": im for i, im in enumerate(imgs)}


def test_protocol_uses_cleanfid_resize_path(monkeypatch):
    gt = _faces(10, 0)
    pred = {k: (v * 0.9 + 0.05) for k, v in _faces(10, 0).items()}
    randconv = M.random_conv_features(0)

    calls = []
    real_build = cleanfid_resize.build_resizer

    def watched(mode):
        fn = real_build(mode)

        def resize(img):
            calls.append((mode, img.dtype, img.shape))
            return fn(img)

        return resize

    monkeypatch.setattr(cleanfid_resize, "build_resizer", watched)
    table = M.evaluate_tryon(pred, gt, "unpaired", features=randconv, kid_subset_size=10)
    assert len(calls) == 20 and {c[0] for c in calls} == {"clean"}
    assert all(c[1] == np.uint8 and c[2] == (40, 30, 3) for c in calls)  # 8-bit images at their own size
    fid = table["FID-randconv"]
    assert "clean-fid 0.1.35 mode='clean'" in fid.extractor and "random conv net" in fid.extractor

    # the value is the FID of randconv features of PIL-bicubic 299x299 images (independent transcription)
    def feats(images):
        x = torch.from_numpy(np.stack([_pil_bicubic_299(im) for im in images.values()])).permute(0, 3, 1, 2)
        return randconv(x / 255).double().numpy()

    fr, fg = feats(gt), feats(pred)
    expected = cleanfid_fid.frechet_distance(fg.mean(0), np.cov(fg, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False))
    assert fid.value == pytest.approx(expected, rel=1e-3)
    # torchmetrics' path (the extractor's own resize of the 40x30 tensors) gives another number
    tm = M.fid_kid(torch.stack(list(gt.values())), torch.stack(list(pred.values())), randconv, kid_subset_size=10)[0]
    assert abs(tm.value - fid.value) > 1e-3 * max(abs(fid.value), 1e-3)
    kid = table["KID-randconv"]
    assert kid.std is None and "one subset" in kid.note  # 10 of 10: whole sets, no made-up spread


def test_protocol_feeds_ground_truth_at_its_own_size():
    gt = _faces(6, 1, size=(80, 60))
    pred = {k: torch.nn.functional.interpolate(v[None], size=(40, 30), mode="bilinear", antialias=True)[0].clamp(0, 1)
            for k, v in gt.items()}
    randconv = M.random_conv_features(0)
    table = M.evaluate_tryon(pred, gt, "unpaired", features=randconv, kid_subset_size=6)
    ref = M.CleanFIDMetrics(randconv).set_reference(torch.stack(list(gt.values())))
    assert table["FID-randconv"].value == pytest.approx(ref.score(torch.stack(list(pred.values())))[0].value, rel=1e-6)
    assert any("resized to 299x299 by clean-fid" in n for n in table.notes)


class _Layers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 299, 299) -> (N, 2048): channel means, tiled
        return x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048].contiguous()


class _StandIn(nn.Module):
    """A TorchScript file shaped like clean-fid's Inception (``.layers`` maps 299x299 inputs to 2048-d)."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_cleanfid_inception_file_is_used_offline(torch_home, no_network):
    d = W.hub_checkpoint_dir()
    d.mkdir(parents=True)
    torch.jit.save(torch.jit.script(_StandIn()), str(d / "inception-2015-12-05.pt"))
    f = M.fid_features("auto")
    assert f.cleanfid_input and f.metric_name("FID") == "FID" and f.num_features == 2048
    assert "clean-fid TorchScript" in f.extractor and "no published hash" in f.weights
    assert str(torch_home) not in f.weights
    x = torch.stack(list(_faces(3, 2).values()))
    feats = M.CleanFIDMetrics(f).embed(x)
    resized = np.stack([_pil_bicubic_299(im) for im in x])  # (N, 299, 299, 3) in [0, 255]
    expected = (resized - 128) / 128  # InceptionV3W's input normalisation, then the stand-in's channel means
    assert np.allclose(feats[:, :3], expected.mean(axis=(1, 2)), atol=1e-5)
    assert M.fid_features("inception").cleanfid_input


def test_cleanfid_inception_file_that_is_not_torchscript_is_named(torch_home, no_network):
    d = W.hub_checkpoint_dir()
    d.mkdir(parents=True)
    (d / "inception-2015-12-05.pt").write_bytes(b"not a TorchScript archive")
    with pytest.raises(ValueError, match=r"\$TORCH_HOME/hub/checkpoints/inception-2015-12-05.pt"):
        M.fid_features("auto")


def test_missing_inception_is_reported_without_machine_paths(torch_home, no_network):
    f = M.fid_features("auto")
    assert f.short == "randconv" and "inception-2015-12-05.pt" in f.reason and "weights-inception" in f.reason
    assert "$TORCH_HOME/hub/checkpoints" in f.reason and str(torch_home) not in f.reason
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt"):
        M.cleanfid_inception_features()
