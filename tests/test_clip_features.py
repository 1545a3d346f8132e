"""FID/KID in the image embedding of vtonlab's CLIP trained on SynthVTON ("FID-synthclip").

The trained CLIP is the active (ci) profile's, trained here into a temporary cache (about half a
minute on one core) so that the user's cache is never touched.
"""

import numpy as np
import pytest
import torch

import vtonlab.metrics as M
from vtonlab import clip as C
from vtonlab.metrics.study import sweep

TINY = C.CLIPSize(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                  text_layers=1, text_heads=2, embed_dim=16, batch_size=8, lr=1e-3, n_train=16, n_test=8,
                  render_size=(32, 24))


def _tiny() -> C.CLIP:
    torch.manual_seed(0)
    return C.CLIP.from_size(TINY)


def test_shapes_names_and_determinism():
    model = _tiny()
    f = M.synthclip_features(model, weights="tiny random CLIP")
    assert f.metric_name("FID") == "FID-synthclip" and f.metric_name("KID") == "KID-synthclip"
    assert not f.official and f.num_features == 16 and "16-d" in f.extractor and f.weights == "tiny random CLIP"
    assert "Kynkäänniemi" in f.reason
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 40, 30, generator=g)
    a = f(x)
    assert a.shape == (5, 16) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, f(x))  # eval mode: no dropout, no randomness
    assert torch.equal(a, M.synthclip_features(_tiny())(x))  # same weights, same features
    assert torch.allclose(f(x[:2]), a[:2], atol=1e-5)  # a batch does not mix images
    # the CLIP sees vtonlab's model range [-1, 1]: the features are its own embedding of 2x - 1, in eval mode
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(a, model.encode_image(x * 2 - 1).embeds, atol=1e-5)
    # clean-fid's batches: (N, 3, 299, 299) in [0, 255]
    assert f.cleanfid_forward(torch.full((2, 3, 299, 299), 127.0)).shape == (2, 16)
    with pytest.raises(TypeError, match="vtonlab.clip.CLIP"):
        M.synthclip_features(torch.nn.Linear(3, 3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The ci profile's CLIP via vtonlab.clip.get_trained, and SynthVTON test images, in a temporary cache."""
    from vtonlab.data import layouts, synthvton
    from vtonlab.data.synth import render_sample

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VTONLAB_CACHE", str(cache))
        mp.setenv("VTONLAB_DATA", str(cache / "data"))
        f = M.synthclip_features(profile="ci")
        test = synthvton("test", profile="ci", pairs="unpaired")
        samples = [test[i] for i in range(len(test))]

        def meta(name):
            return layouts.read_meta(layouts.vitonhd_paths(test.root, "test", layouts.stem_of(name))["meta"])

        images = torch.stack([(s["image"] + 1) / 2 for s in samples]).clamp(0, 1)
        masks = torch.stack([s["worn_mask"] for s in samples])
        donors = []
        for s in samples:  # the same person and pose wearing the unpaired partner's garment (notebook 05)
            person, garment = meta(s["im_name"]), meta(s["c_name"])
            r = render_sample(person["seed"], tuple(images.shape[-2:]), garment_seed=garment["garment_id"],
                              pose_id=person["pose_id"])
            donors.append(torch.from_numpy(r["image"]).permute(2, 0, 1).float() / 255)
    return f, images, masks, torch.stack(donors)


def test_trained_extractor_is_labelled_by_its_checkpoint(trained):
    f, images, _, _ = trained
    assert "profile ci" in f.weights and "steps" in f.weights and "SynthVTON" in f.weights
    assert f.num_features == C.clip_size("ci").embed_dim


def test_it_sees_a_texture_swap_the_random_conv_is_nearly_blind_to(trained):
    """KID-randconv hardly moves when the garment is swapped for another SynthVTON garment (its range over the
    swap strengths is a small fraction of its range under blur). Measured against the same blur, the swap
    moves FID-synthclip and KID-synthclip at least twice as much as it moves the randconv metrics."""
    f, images, masks, donors = trained
    rc = M.random_conv_features(0)
    res = sweep(images, masks, np.linspace(0, 1, 5), donors=donors, fill=0.5, features=[rc, f],
                kinds=("blur", "texture"), pixel_metrics=False, kid_subset_size=len(images))

    def texture_vs_blur(metric):  # scale-free: the response to the swap in units of the response to blur
        spread = {k: float(np.ptp(res.curve(metric, k))) for k in ("blur", "texture")}
        assert spread["blur"] > 0, metric
        return spread["texture"] / spread["blur"]

    assert texture_vs_blur("KID-randconv") < 0.3
    assert texture_vs_blur("KID-synthclip") > 2 * texture_vs_blur("KID-randconv")
    assert texture_vs_blur("FID-synthclip") > 2 * texture_vs_blur("FID-randconv")
    assert res.monotonicity("FID-synthclip", "texture") == pytest.approx(1.0)
    # an untrained CLIP of the same size does not have it: the training made the difference
    torch.manual_seed(0)
    untrained = M.synthclip_features(C.CLIP.from_size("ci"), weights="untrained")
    res_u = sweep(images, masks, np.linspace(0, 1, 5), donors=donors, fill=0.5, features=[untrained],
                  kinds=("blur", "texture"), pixel_metrics=False, kid_subset_size=len(images))
    ptp = {k: float(np.ptp(res_u.curve("FID-synthclip", k))) for k in ("blur", "texture")}
    assert ptp["texture"] / ptp["blur"] < 0.5 * texture_vs_blur("FID-synthclip")
