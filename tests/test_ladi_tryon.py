"""Fine-tuning the try-on UNet (vtonlab.ladi.tryon): the widened start, the input order, what trains, condition
dropout measured over a run, the no-garment variant, checkpoints and bad inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import UNet2DConditionModel

from vtonlab import gmm
from vtonlab.checkpoints import CheckpointError, save_checkpoint
from vtonlab.clip import CLIP
from vtonlab.ladi import adapter as A
from vtonlab.ladi import inpaint as I
from vtonlab.ladi import tryon as T
from vtonlab.ladi import vae as V
from vtonlab.ladi import warping as Wp

H, W = 64, 48
LAT = (H // 8, W // 8)
N_WORDS = 4


@pytest.fixture(scope="module")
def parts() -> SimpleNamespace:
    """Small frozen components of the ci profile's sizes (untrained, seeded)."""
    torch.manual_seed(0)
    clip = CLIP.from_size("ci").eval()
    vae = V.build_vae(V.VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
                                  image_size=(H, W))).eval()
    base = I.build_unet(I.InpaintConfig.for_profile("ci", block_out_channels=(16, 32))).eval().requires_grad_(False)
    torch.manual_seed(1)
    adapter = A.InversionAdapter.for_clip(clip, num_pseudo_words=N_WORDS).eval()
    tps = gmm.GMM(Wp.tps_config("ci")).eval()
    refine = Wp.RefineUNet(Wp.WarpRefineConfig.for_profile("ci")).eval()
    return SimpleNamespace(clip=clip, vae=vae, base=base, adapter=adapter, tps=tps, refine=refine)


def _cfg(**kw) -> T.TryOnConfig:
    return T.TryOnConfig.for_profile("ci", **{"num_pseudo_words": N_WORDS, **kw})


def _samples(n: int, seed: int = 0) -> list[dict]:
    """Sample dicts as SynthVTON gives them (the keys prepare_data reads)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        image = torch.nn.functional.avg_pool2d(torch.rand(1, 3, H, W, generator=g) * 2 - 1, 9, 1, 4)[0]
        mask = torch.zeros(1, H, W)
        mask[:, 16:48, 8:40] = 1
        out.append({"image": image, "inpaint_mask": mask, "agnostic": image * (1 - mask),
                    "pose_map": torch.rand(18, H, W, generator=g) + 0.1, "cloth": torch.rand(3, H, W, generator=g) * 2 - 1,
                    "cloth_mask": torch.ones(1, H, W), "caption": f"a shirt number {i}"})
    return out


def _direct_data(n: int, garment: bool = True, seed: int = 0) -> T.TryOnData:
    """TryOnData with zero posterior spread (every latent sample is its mean) and distinguishable channels."""
    g = torch.Generator().manual_seed(seed)
    t = {"latent_mean": torch.randn(n, 4, *LAT, generator=g), "masked_mean": torch.randn(n, 4, *LAT, generator=g) + 5,
         "mask": (torch.rand(n, 1, *LAT, generator=g) > 0.5).float(), "pose": torch.rand(n, 18, *LAT, generator=g) + 0.1,
         "words": torch.randn(n, N_WORDS, 64, generator=g)}
    if garment:
        t["garment_mean"] = torch.randn(n, 4, *LAT, generator=g) - 5
    for k in ("latent", "masked", "garment"):
        if f"{k}_mean" in t:
            t[f"{k}_std"] = torch.zeros_like(t[f"{k}_mean"])
    return T.TryOnData(t, [A.prompt("upper_body", N_WORDS)] * n)


class UNetSpy:
    """Records the input and text states of every UNet forward with gradients on (training, not evaluation)."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = UNet2DConditionModel.forward

        def forward(unet, sample, timestep, encoder_hidden_states=None, **kw):
            if torch.is_grad_enabled():
                self.calls.append((sample.detach().clone(), encoder_hidden_states.detach().clone()))
            return original(unet, sample, timestep, encoder_hidden_states=encoder_hidden_states, **kw)

        monkeypatch.setattr(UNet2DConditionModel, "forward", forward)


def test_widened_unet_starts_equal_to_the_base_with_zero_new_channels_and_leaves_the_base_alone(parts):
    g = torch.Generator().manual_seed(0)
    states, t = torch.randn(2, 77, 64, generator=g), torch.tensor([10, 700])
    for garment, channels in ((True, 31), (False, 27)):
        unet = T.start_unet(parts.base, garment)
        assert parts.base.conv_in.in_channels == parts.base.config.in_channels == 9  # a copy was widened
        assert unet.config.in_channels == unet.conv_in.in_channels == channels
        assert torch.equal(unet.conv_in.weight[:, :9], parts.base.conv_in.weight)
        assert not unet.conv_in.weight[:, 9:].any()
        assert all(p.requires_grad for p in unet.parameters())  # the frozen base's flags are not inherited
        x = torch.randn(2, channels, *LAT, generator=g) * 3  # whatever the new channels hold
        with torch.no_grad():
            assert torch.allclose(unet(x, t, encoder_hidden_states=states).sample,
                                  parts.base(x[:, :9], t, encoder_hidden_states=states).sample, atol=1e-5)


def test_first_training_step_feeds_the_unet_the_official_channel_order_and_prompt_states(parts, monkeypatch):
    data = _direct_data(4)
    spy = UNetSpy(monkeypatch)
    T.train(_cfg(steps=1, batch_size=4, n_train=4, uncond_fraction=0.5), data, base_unet=parts.base,
            text_encoder=parts.clip, progress=False)
    (x, states), = spy.calls
    assert x.shape == (4, 31, *LAT)
    tens = data.tensors
    full = T.text_states(parts.clip, data.prompts[:1], tens["words"][:1])[0]
    empty = T.text_states(parts.clip, [""])[0]
    seen, dropped = set(), {"pose": 0, "garment": 0, "text": 0}
    for r in range(4):
        i = int(((tens["masked_mean"] - x[r, 5:9]).abs().flatten(1).amax(1) < 1e-6).nonzero()[0])  # which sample
        seen.add(i)
        assert torch.equal(x[r, 4:5], tens["mask"][i])  # 4: mask
        assert not torch.allclose(x[r, :4], tens["latent_mean"][i])  # 0-3: the *noisy* person latent
        # 9-26: pose, 27-30: garment latent, each the sample's own or zeroed by condition dropout
        for name, got, own in (("pose", x[r, 9:27], tens["pose"][i]), ("garment", x[r, 27:31], tens["garment_mean"][i])):
            if not torch.equal(got, own):
                assert not got.any(), f"row {r}: channels of {name} hold neither sample {i}'s {name} nor zeros"
                dropped[name] += 1
        if torch.allclose(states[r], empty, atol=1e-5):
            dropped["text"] += 1
        else:
            assert torch.allclose(states[r], full if i == 0 else T.text_states(parts.clip, data.prompts[i:i + 1],
                                                                               tens["words"][i:i + 1])[0], atol=1e-5)
    assert seen == {0, 1, 2, 3}
    assert 0 < sum(dropped.values()) < 12  # p = 0.5 here: both branches were exercised


def test_three_ci_steps_change_the_unet_and_no_frozen_component(parts):
    frozen = {k: getattr(parts, k) for k in ("vae", "clip", "adapter", "tps", "refine", "base")}
    before = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in frozen.items()}
    cfg = _cfg(steps=3, batch_size=4, n_train=4)
    data = T.prepare_data(cfg, _samples(4), vae=parts.vae, clip=parts.clip, adapter=parts.adapter, tps=parts.tps,
                          refine=parts.refine)
    assert set(data.tensors) == {"latent_mean", "latent_std", "masked_mean", "masked_std", "garment_mean", "garment_std",
                                 "mask", "pose", "words"}
    assert data.tensors["words"].shape == (4, N_WORDS, 64) and data.prompts[0].count("$") == N_WORDS
    unet, history = T.train(cfg, data, base_unet=parts.base, text_encoder=parts.clip, progress=False)
    for k, m in frozen.items():
        assert all(torch.equal(v, m.state_dict()[n]) for n, v in before[k].items()), f"{k} changed"
    start = T.start_unet(parts.base, True).state_dict()
    moved = [k for k, v in unet.state_dict().items() if not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2
    assert unet.conv_in.weight[:, 9:].abs().amax() > 0  # the new pose and garment channels learn
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(history.losses["loss"])))


def test_dropout_rates_measured_over_a_run_are_about_p_and_recorded_in_the_manifest(parts, tmp_cache, monkeypatch):
    spy = UNetSpy(monkeypatch)
    cfg = _cfg(steps=40, batch_size=8, n_train=8, eval_samples=4)
    unet, ckpt = T.get_trained("ci", config=cfg, base=parts.base, vae=parts.vae, clip=parts.clip, adapter=parts.adapter,
                               tps=parts.tps, refine=parts.refine, train_data=_direct_data(8),
                               eval_data=_direct_data(4, seed=1), progress=False, verbose=False)
    assert ckpt.name == "ladi_tryon_n4" and ckpt.trained and unet.config.in_channels == 31
    empty = T.text_states(parts.clip, [""])[0]
    seen = sum(len(x) for x, _ in spy.calls)
    counts = {"pose": sum(int((x[:, 9:27].flatten(1).abs().amax(1) == 0).sum()) for x, _ in spy.calls),
              "garment": sum(int((x[:, 27:31].flatten(1).abs().amax(1) == 0).sum()) for x, _ in spy.calls),
              "text": sum(int((s - empty).flatten(1).abs().amax(1).lt(1e-5).sum()) for _, s in spy.calls)}
    m = ckpt.metrics
    assert seen == m["dropout_samples"] == 320
    for name, c in counts.items():
        assert m[f"dropout_rate_{name}"] == pytest.approx(c / seen)  # what the UNet saw, over the whole run
        assert abs(c / seen - 0.2) < 0.07, (name, c / seen)
    for c in ("all", "no_text", "no_pose", "no_garment", "none"):
        assert m[f"test_mse_{c}"] > 0
    assert "base_test_mse" in m and m["n_eval"] == 4 and ckpt.config["adapter_sha256"].startswith("state:")


def test_no_garment_variant_has_27_channels_and_never_warps_or_encodes_a_garment(parts, tmp_cache, monkeypatch):
    def no_warp(*a, **k):
        raise AssertionError("the no-garment variant computed a warped garment")

    monkeypatch.setattr(T, "_warped_garment", no_warp)
    encoded = []
    monkeypatch.setattr(parts.vae, "encode", lambda x, _e=parts.vae.encode: encoded.append(x) or _e(x))
    cfg = _cfg(garment_input=False, steps=2, batch_size=4, n_train=4, eval_samples=4)
    unet, ckpt = T.get_trained("ci", config=cfg, base=parts.base, vae=parts.vae, clip=parts.clip, adapter=parts.adapter,
                               train_data=_samples(4), eval_data=_samples(4, seed=1), progress=False, verbose=False)
    assert unet.config.in_channels == unet.conv_in.in_channels == 27
    assert ckpt.name == "ladi_tryon_nogarment_n4"
    assert ckpt.config["tps_sha256"] is None and ckpt.config["refine_sha256"] is None
    assert len(encoded) == 4  # person and masked person, train and test; no garment
    assert "test_mse_no_garment" not in ckpt.metrics and "test_mse_no_pose" in ckpt.metrics
    monkeypatch.undo()
    data = T.prepare_data(cfg, _samples(2), vae=parts.vae, clip=parts.clip, adapter=parts.adapter)
    assert not data.has_garment and "garment_mean" not in data.tensors


def _good_checkpoint(parts, tmp_path, cfg):
    pairs = dict(base=(parts.base, None), vae=(parts.vae, None), clip=(parts.clip, None), adapter=(parts.adapter, None),
                 tps=(parts.tps, None), refine=(parts.refine, None))
    expected = {**T.checkpoint_config(cfg, "ci", **pairs), "profile": "ci"}
    unet = T.start_unet(parts.base)
    with torch.no_grad():
        unet.conv_in.weight[:, 9:] = 0.5
    path = save_checkpoint(tmp_path / "tryon_good.safetensors", {"unet": unet}, name="ladi_tryon", config=expected,
                           profile="ci")
    return path, expected, pairs, unet


def test_get_trained_loads_a_matching_checkpoint_and_refuses_another_naming_the_fields(parts, tmp_path):
    cfg = _cfg()
    good, expected, pairs, unet = _good_checkpoint(parts, tmp_path, cfg)
    loaded, _ = T.get_trained("ci", config=cfg, checkpoint=good, verbose=False, **pairs)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in loaded.state_dict().items())
    other = {**expected, "uncond_fraction": 0.5, "lr": 1e-3}
    bad = save_checkpoint(tmp_path / "tryon_other.safetensors", {"unet": unet}, name="ladi_tryon", config=other,
                          profile="ci")
    with pytest.raises(CheckpointError, match="tryon_other.safetensors") as err:
        T.get_trained("ci", config=cfg, checkpoint=bad, verbose=False, **pairs)
    assert "uncond_fraction: checkpoint 0.5, requested 0.2" in str(err.value) and "lr: checkpoint 0.001" in str(err.value)
    torch.manual_seed(5)
    another = A.InversionAdapter.for_clip(parts.clip, num_pseudo_words=N_WORDS).eval()
    with pytest.raises(CheckpointError, match="adapter_sha256"):
        T.get_trained("ci", config=cfg, checkpoint=good, verbose=False, **{**pairs, "adapter": another})
    with pytest.raises(CheckpointError, match="garment_input: checkpoint True, requested False"):
        T.get_trained("ci", config=_cfg(garment_input=False), checkpoint=good, verbose=False, **pairs)


def test_inversion_mode_fetches_the_trained_adapter_lazily_and_only_when_needed(parts, tmp_path, monkeypatch):
    cfg = _cfg()
    good, _, pairs, _ = _good_checkpoint(parts, tmp_path, cfg)
    pairs.pop("adapter")
    calls = []

    def fake_get_trained(profile, *, num_pseudo_words=None, inpaint=None, verbose=True):
        calls.append((profile.name, num_pseudo_words, inpaint[0] is parts.base))
        return parts.adapter, None

    monkeypatch.setattr(A, "get_trained", fake_get_trained, raising=False)
    T.get_trained("ci", config=cfg, checkpoint=good, verbose=False, **pairs)
    assert calls == [("ci", N_WORDS, True)]
    with pytest.raises(CheckpointError, match="text_mode: checkpoint 'inversion', requested 'caption'"):
        T.get_trained("ci", config=_cfg(text_mode="caption"), checkpoint=good, verbose=False, **pairs)
    assert len(calls) == 1  # the caption variant does not ask for an adapter
    monkeypatch.delattr(A, "get_trained", raising=False)
    with pytest.raises(FileNotFoundError, match=r"vtonlab.ladi.adapter.get_trained does not exist yet; pass adapter="):
        T.get_trained("ci", config=cfg, checkpoint=good, verbose=False, **pairs)


def test_checkpoint_names_of_the_variants():
    assert T.checkpoint_name(T.TryOnConfig()) == "ladi_tryon"
    assert T.checkpoint_name(T.TryOnConfig(garment_input=False, num_pseudo_words=8, seed=2)) == "ladi_tryon_nogarment_n8_seed2"
    assert T.checkpoint_name(T.TryOnConfig(text_mode="caption", num_pseudo_words=8)) == "ladi_tryon_caption"
    assert T.checkpoint_name(T.TryOnConfig(text_mode="none")) == "ladi_tryon_notext"
    ci, gpu = T.TryOnConfig.for_profile("ci"), T.TryOnConfig.for_profile("gpu")
    assert (ci.steps, ci.lr, ci.warmup_steps, ci.uncond_fraction) == (100, 5e-4, 5, 0.2)
    assert (gpu.steps, gpu.lr, gpu.warmup_steps, gpu.betas, gpu.weight_decay) == (20000, 1e-5, 500, (0.9, 0.999), 1e-2)
    cpu = T.TryOnConfig.for_profile("cpu")
    assert (cpu.steps, cpu.warmup_steps) == (2000, 100)


def test_bad_inputs_name_what_was_expected(parts):
    with pytest.raises(ValueError, match="TryOnConfig.text_mode: expected one of"):
        T.TryOnConfig(text_mode="noun_chunks")
    with pytest.raises(ValueError, match="TryOnConfig.uncond_fraction: expected a probability"):
        T.TryOnConfig(uncond_fraction=1.5)
    with pytest.raises(ValueError, match="TryOnConfig.garment_input"):
        T.TryOnConfig(garment_input="warped")
    wide = T.start_unet(parts.base)
    with pytest.raises(ValueError, match="base_unet: expected the 9-channel inpainting UNet.*in_channels=31"):
        T.start_unet(wide)
    with pytest.raises(ValueError, match="adapter: predicts 4 pseudo-words but TryOnConfig.num_pseudo_words=16"):
        T.prepare_data(_cfg(num_pseudo_words=16), _samples(1), vae=parts.vae, clip=parts.clip, adapter=parts.adapter,
                       tps=parts.tps, refine=parts.refine)
    lacking = [{k: v for k, v in s.items() if k != "cloth"} for s in _samples(1)]
    with pytest.raises(KeyError, match="lack cloth"):
        T.prepare_data(_cfg(), lacking, vae=parts.vae, clip=parts.clip, adapter=parts.adapter, tps=parts.tps,
                       refine=parts.refine)
    with pytest.raises(ValueError, match="garment_input=True needs the frozen warping stages"):
        T.prepare_data(_cfg(), _samples(1), vae=parts.vae, clip=parts.clip, adapter=parts.adapter)
    with pytest.raises(ValueError, match="data: has warped-garment latents but TryOnConfig.garment_input=False"):
        T.train(_cfg(garment_input=False, steps=1, batch_size=2), _direct_data(2), base_unet=parts.base,
                text_encoder=parts.clip, progress=False)
    with pytest.raises(ValueError, match="at least one batch of 8 samples, got 2"):
        T.train(_cfg(steps=1), _direct_data(2), base_unet=parts.base, text_encoder=parts.clip, progress=False)
    with pytest.raises(ValueError, match=r"config= given together with garment_input=False"):
        T.get_trained("ci", config=_cfg(), garment_input=False)
    with pytest.raises(ValueError, match="base: expected the 9-channel inpainting UNet"):
        T.get_trained("ci", config=_cfg(), base=wide, vae=parts.vae, clip=parts.clip, adapter=parts.adapter)
    small = A.InversionAdapter.for_clip(parts.clip, num_pseudo_words=2)
    with pytest.raises(ValueError, match="adapter: predicts 2 pseudo-words but num_pseudo_words=4"):
        T.get_trained("ci", config=_cfg(), base=parts.base, vae=parts.vae, clip=parts.clip, adapter=small)
    with pytest.raises(ValueError, match=r"TryOnData: tensors\['pose'\] expected shape \(2, 18, 8, 6\)"):
        T.TryOnData({**_direct_data(2).tensors, "pose": torch.zeros(2, 18, 4, 3)}, ["", ""])



def test_garment_warp_option_feeds_the_tps_warp_or_the_refined_one(parts, monkeypatch):
    from vtonlab.ladi import warping

    seen = []
    original = warping.refine_input
    monkeypatch.setattr(warping, "refine_input", lambda batch, warped: seen.append(1) or original(batch, warped))
    samples = _samples(2)
    refined = T.prepare_data(_cfg(text_mode="none"), samples, vae=parts.vae, tps=parts.tps, refine=parts.refine)
    assert len(seen) == 1  # one batch through the refinement UNet
    tps_only = T.prepare_data(_cfg(text_mode="none", garment_warp="tps"), samples, vae=parts.vae, tps=parts.tps,
                              refine=parts.refine)
    assert len(seen) == 1  # the TPS warp alone never calls it
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("cloth", "cloth_mask", "agnostic", "pose_map", "image")}
    _, warped, _ = warping.tps_warp(parts.tps, batch)
    expected = parts.vae.encode(warped.clamp(-1, 1)).latent_dist.mean * parts.vae.config.scaling_factor
    assert torch.allclose(tps_only.tensors["garment_mean"], expected, atol=1e-5)
    assert not torch.allclose(refined.tensors["garment_mean"], tps_only.tensors["garment_mean"])
    with pytest.raises(ValueError, match="garment_warp"):
        _cfg(garment_warp="flow")


def test_conv_in_lr_scale_sets_the_first_convolution_s_rate(parts, monkeypatch):
    groups = {}
    original = torch.optim.AdamW.__init__

    def spy(opt, params, **kw):
        params = list(params)
        groups["lrs"] = sorted(g.get("lr", kw["lr"]) for g in params)
        groups["sizes"] = sorted(len(g["params"]) for g in params)
        original(opt, params, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    cfg = _cfg(steps=1, batch_size=2, n_train=2, conv_in_lr_scale=10.0)
    T.train(cfg, _direct_data(2), base_unet=parts.base, text_encoder=parts.clip, progress=False)
    assert groups["lrs"] == pytest.approx([cfg.lr, 10 * cfg.lr])
    assert groups["sizes"][0] == 2  # conv_in's weight and bias alone in the scaled group
    with pytest.raises(ValueError, match="conv_in_lr_scale"):
        _cfg(conv_in_lr_scale=0)


def test_data_cache_prepares_each_variant_once_for_all_seeds(parts, tmp_cache, monkeypatch):
    calls = []
    original = T.prepare_data
    monkeypatch.setattr(T, "prepare_data", lambda cfg, ds, **kw: calls.append(cfg.seed) or original(cfg, ds, **kw))
    cache: dict = {}
    kw = dict(base=parts.base, vae=parts.vae, clip=parts.clip, adapter=parts.adapter, tps=parts.tps, refine=parts.refine,
              train_data=_samples(4), eval_data=_samples(4, seed=1), progress=False, verbose=False, data_cache=cache)
    for seed in (0, 1):
        T.get_trained("ci", config=_cfg(steps=1, batch_size=4, n_train=4, eval_samples=4, seed=seed), **kw)
    assert calls == [0, 0]  # train and test data of seed 0; seed 1 reuses both
    other = A.InversionAdapter.for_clip(parts.clip, num_pseudo_words=N_WORDS).eval()  # other weights: other pseudo-words
    T.get_trained("ci", config=_cfg(steps=1, batch_size=4, n_train=4, eval_samples=4, seed=2), **{**kw, "adapter": other})
    assert calls == [0, 0, 2, 2]
