"""Tests for vtonlab.ladi.pipeline: LaDI-VTON's try-on pipeline (guidance branches, DDIM, EMASC decoding, saving, loading)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTokenizer

from vtonlab import clip as C
from vtonlab.clip.bpe import build_vocab, read_bpe_merges
from vtonlab.ladi import adapter as A
from vtonlab.ladi import emasc as E
from vtonlab.ladi import pipeline as P
from vtonlab.ladi import tryon as T
from vtonlab.ladi import unet as U
from vtonlab.ladi import vae as V

H, W = 48, 32
LATENT = (H // 8, W // 8)
N_WORDS = 4
TINY_CLIP = C.CLIPSize(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                       text_layers=2, text_heads=2, embed_dim=16, batch_size=8, lr=1e-3, n_train=16, n_test=8,
                       render_size=(32, 24))
TINY_VAE = V.VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, image_size=(H, W))


def _unet(in_channels: int = 31, cross: int = 32, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=LATENT, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross, norm_num_groups=8, attention_head_dim=8)
    with torch.no_grad():  # a trained try-on UNet reads its new channels: make them count
        unet.conv_in.weight.normal_(0, 0.1)
    return unet.eval()


@pytest.fixture(scope="module")
def parts() -> dict:
    torch.manual_seed(0)
    clip = C.CLIP.from_size(TINY_CLIP).eval()
    vae = V.build_vae(TINY_VAE).eval()
    torch.manual_seed(1)
    adapter = A.InversionAdapter.for_clip(clip, num_pseudo_words=N_WORDS).eval()
    emasc = E.build_emasc(vae, "nonlinear").eval()  # PyTorch's default init: the skips change the decoding
    return {"clip": clip, "vae": vae, "adapter": adapter, "emasc": emasc, "unet": _unet()}


def _pipe(parts: dict, unet=None, *, adapter=True, emasc=True) -> P.LadiVTONPipeline:
    pipe = P.LadiVTONPipeline.from_components(parts["vae"], unet if unet is not None else parts["unet"], parts["clip"],
                                              adapter=parts["adapter"] if adapter else None,
                                              emasc=parts["emasc"] if emasc else None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe(parts) -> P.LadiVTONPipeline:
    return _pipe(parts)


def _inputs(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, 1, H, W)
    mask[:, :, 8:36, 4:28] = 0.9  # binarised at 0.5
    return {"image": torch.rand(b, 3, H, W, generator=g) * 2 - 1, "mask": mask,
            "pose_map": torch.rand(b, 18, H, W, generator=g), "warped_cloth": torch.rand(b, 3, H, W, generator=g) * 2 - 1,
            "cloth": torch.rand(b, 3, 32, 24, generator=g) * 2 - 1}


def _run(pipe, x: dict, seed: int = 1, **kw):
    kw.setdefault("num_inference_steps", 2)
    return pipe(**x, generator=torch.Generator().manual_seed(seed), **kw).images


class UNetSpy:
    """Records every UNet call's input, timestep, hidden states and output."""

    def __init__(self, unet):
        self.calls: list[dict] = []
        self.handle = unet.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):
        self.calls.append({"x": args[0].clone(), "t": args[1], "ctx": kwargs["encoder_hidden_states"].clone(),
                           "eps": output.sample.clone()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _empty_states(clip, b: int) -> torch.Tensor:
    ids = A.tokenize_prompts([""] * b, clip)
    return clip.hf.text_model(input_ids=ids)[0]


# ----------------------------------------------------------------------------- guidance branches
def test_guidance_scale_one_evaluates_only_the_conditional_branch(pipe):
    x = _inputs()
    with UNetSpy(pipe.unet) as spy:
        _run(pipe, x, guidance_scale=1.0, num_inference_steps=3)
    assert len(spy.calls) == 3 and all(c["x"].shape[0] == 2 for c in spy.calls)
    with UNetSpy(pipe.unet) as spy:
        _run(pipe, x, guidance_scale=1.5, num_inference_steps=3)
    assert len(spy.calls) == 3 and all(c["x"].shape[0] == 4 for c in spy.calls)


def test_negative_branch_gets_empty_prompt_zero_pose_zero_garment(pipe, parts, monkeypatch):
    clip, vae, b, scale = parts["clip"], parts["vae"], 2, 3.0
    x = _inputs(b)
    steps_seen = []
    real_step = pipe.scheduler.step

    def step(eps, t, z, **kw):
        steps_seen.append(eps.clone())
        return real_step(eps, t, z, **kw)

    monkeypatch.setattr(pipe.scheduler, "step", step)
    with UNetSpy(pipe.unet) as spy:
        _run(pipe, x, guidance_scale=scale, sample_latents=False)
    with torch.no_grad():  # the expected conditions, computed from our CLIP and VAE directly
        words = parts["adapter"](clip.encode_image(x["cloth"]).hidden_states)
        cond = A.encode_text_with_pseudo_words(clip, A.tokenize_prompts([A.prompt("upper_body", N_WORDS)] * b, clip), words)
        empty = _empty_states(clip, b)
        m = (x["mask"] >= 0.5).float()
        sf = vae.config.scaling_factor
        masked = vae.encode(x["image"] * (1 - m)).latent_dist.mode() * sf
        garment = vae.encode(x["warped_cloth"]).latent_dist.mode() * sf
    pose = U.resize_pose(x["pose_map"], LATENT)
    for call, eps in zip(spy.calls, steps_seen):
        inp, ctx = call["x"], call["ctx"]
        un, co = inp[:b], inp[b:]
        torch.testing.assert_close(un[:, :4], co[:, :4], rtol=0, atol=0)  # the same z_t in both branches
        for half in (un, co):
            torch.testing.assert_close(half[:, 4:5], U.resize_mask(m, LATENT))
            torch.testing.assert_close(half[:, 5:9], masked, rtol=1e-5, atol=1e-5)
        assert not un[:, 9:27].any() and not un[:, 27:31].any()
        torch.testing.assert_close(co[:, 9:27], pose)
        torch.testing.assert_close(co[:, 27:31], garment, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ctx[:b], empty, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ctx[b:], cond, rtol=1e-5, atol=1e-5)
        assert (ctx[b:] - ctx[:b]).abs().max() > 1e-3
        u, c = call["eps"].chunk(2)
        torch.testing.assert_close(eps, u + scale * (c - u), rtol=1e-5, atol=1e-6)  # eps_u + w (eps_c - eps_u)


@pytest.mark.parametrize("text_mode", ["caption", "none"])
def test_caption_and_none_text_modes(pipe, parts, text_mode):
    clip, b = parts["clip"], 2
    x = _inputs(b)
    captions = ["a red striped shirt", "a blue shirt"]
    with UNetSpy(pipe.unet) as spy:
        _run(pipe, {**x, "cloth": None}, guidance_scale=2.0, num_inference_steps=1, text_mode=text_mode,
             captions=captions if text_mode == "caption" else None)
    ctx = spy.calls[0]["ctx"]
    expected = clip.hf.text_model(input_ids=A.tokenize_prompts(captions, clip))[0] if text_mode == "caption" \
        else _empty_states(clip, b)
    torch.testing.assert_close(ctx[b:], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ctx[:b], _empty_states(clip, b), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- randomness, DDIM, callback
def test_fixed_generator_reproduces_and_other_seed_differs(pipe):
    x = _inputs()
    a, again, other = _run(pipe, x, seed=3), _run(pipe, x, seed=3), _run(pipe, x, seed=4)
    assert a.shape == (2, 3, H, W) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, again)
    assert (a - other).abs().max() > 1e-3


def test_ddim_timesteps_callback_per_step_and_trajectory(pipe):
    x, steps = _inputs(), 4
    seen = []

    def record(p, i, t, tensors):
        seen.append((i, int(t), tuple(tensors)))
        return {}

    out = pipe(**x, num_inference_steps=steps, generator=torch.Generator().manual_seed(5), callback_on_step_end=record,
               callback_on_step_end_tensor_inputs=["latents", "noise_pred"], output_type="latent", return_trajectory=True)
    ref = DDIMScheduler(**P.SD2_SCHEDULER)
    ref.set_timesteps(steps)
    assert [s[0] for s in seen] == list(range(steps))
    assert [s[1] for s in seen] == ref.timesteps.tolist() == out.timesteps.tolist()
    assert all(s[2] == ("latents", "noise_pred") for s in seen)
    assert out.trajectory.shape == (steps, 2, 4, *LATENT) and out.pred_original.shape == out.trajectory.shape
    torch.testing.assert_close(out.trajectory[-1], out.images, rtol=0, atol=0)


def test_callback_can_replace_latents(pipe):
    x = _inputs()
    fixed = torch.randn(2, 4, *LATENT, generator=torch.Generator().manual_seed(9))

    def replace_last(p, i, t, tensors):
        return {"latents": fixed} if i == p.num_timesteps - 1 else {}

    out = _run(pipe, x, num_inference_steps=3, callback_on_step_end=replace_last)
    plain = _run(pipe, x, num_inference_steps=3)
    torch.testing.assert_close(out, pipe.decode(fixed, x["image"], x["mask"]), rtol=1e-5, atol=1e-5)
    assert (out - plain).abs().max() > 1e-3


# ----------------------------------------------------------------------------- EMASC decoding
def test_emasc_off_is_plain_vae_decoding_and_on_adds_masked_skips(pipe, parts):
    x = _inputs()
    z = _run(pipe, x, output_type="latent")
    vae, sf = parts["vae"], parts["vae"].config.scaling_factor
    with torch.no_grad():
        plain = (vae.decode(z / sf).sample.clamp(-1, 1) + 1) / 2
        m = (x["mask"] >= 0.5).float()
        _, feats = V.encode_with_features(vae, x["image"] * (1 - m))
        skips = parts["emasc"]([feats[i] for i in V.SKIP_LAYERS], m)
        with_skips = (V.decode_with_skips(vae, z / sf, skips).clamp(-1, 1) + 1) / 2
    off, on = _run(pipe, x, emasc=False), _run(pipe, x)
    torch.testing.assert_close(off, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(on, with_skips, rtol=1e-5, atol=1e-5)
    assert (on - off).abs().max() > 1e-3


# ----------------------------------------------------------------------------- UNet variants
def test_27_and_9_channel_unets_and_channel_mismatch(parts):
    x = _inputs()
    no_garment = _pipe(parts, _unet(27))
    with UNetSpy(no_garment.unet) as spy:
        _run(no_garment, {**x, "warped_cloth": None}, num_inference_steps=1, guidance_scale=2.0)
    assert spy.calls[0]["x"].shape == (4, 27, *LATENT)
    base = _pipe(parts, _unet(9))
    with UNetSpy(base.unet) as spy:
        _run(base, {**x, "pose_map": None, "warped_cloth": None}, num_inference_steps=1, guidance_scale=2.0)
    assert spy.calls[0]["x"].shape == (4, 9, *LATENT)
    full = _pipe(parts)
    with UNetSpy(full.unet) as spy:  # pose off: zeros in both branches (the official no_pose)
        _run(full, x, num_inference_steps=1, guidance_scale=2.0, use_pose=False)
    assert not spy.calls[0]["x"][:, 9:27].any() and spy.calls[0]["x"][2:, 27:31].abs().max() > 0
    with pytest.raises(ValueError, match="in_channels=31.*use_garment=False expects in_channels=27 or 9"):
        _run(full, x, use_garment=False)
    with pytest.raises(ValueError, match="use_garment=True.*in_channels=27.*expects in_channels=31"):
        _run(no_garment, x, use_garment=True)
    with pytest.raises(ValueError, match="use_pose=True.*in_channels=9.*reads no pose"):
        _run(base, x, use_pose=True, use_garment=False)


# ----------------------------------------------------------------------------- saving and loading
def test_save_load_round_trip_safetensors_only(pipe, tmp_path):
    x = _inputs()
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".safetensors"}
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {
        "vae", "unet", "text_encoder", "image_encoder", "adapter", "emasc"}
    back = P.LadiVTONPipeline.from_pretrained(folder)
    back.set_progress_bar_config(disable=True)
    assert isinstance(back.adapter, P.InversionAdapterModel) and isinstance(back.emasc, P.EMASCModel)
    assert back.config.image_fit == "pad" and back.num_pseudo_words == N_WORDS
    torch.testing.assert_close(_run(back, x, guidance_scale=2.0), _run(pipe, x, guidance_scale=2.0), rtol=0, atol=0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pipe.save_pretrained(folder)
    with pytest.raises(ValueError, match="safetensors only"):
        pipe.save_pretrained(tmp_path / "other", safe_serialization=False)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.bin: pickled weights are never loaded.*convert"):
        P.LadiVTONPipeline.from_pretrained(folder)


def test_ablation_pipeline_without_adapter_and_emasc_round_trips(parts, tmp_path):
    pipe = _pipe(parts, adapter=False, emasc=False)
    pipe.save_pretrained(tmp_path / "p")
    back = P.LadiVTONPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert back.adapter is None and back.emasc is None and back.image_encoder is None
    x = {**_inputs(), "cloth": None}
    torch.testing.assert_close(_run(back, x, text_mode="none"), _run(pipe, x, text_mode="none"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="text_mode='inversion' needs the adapter"):
        _run(pipe, _inputs())
    with pytest.raises(ValueError, match="no emasc component"):
        _run(pipe, x, text_mode="none", emasc=True)


def test_folder_with_a_component_from_another_configuration(pipe, tmp_path):
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "unet")
    _unet(cross=48).save_pretrained(folder / "unet")  # a UNet of a pipeline whose text tower is 48 wide
    with pytest.raises(ValueError, match=r"unet \(from .*unet\): cross_attention_dim=48, expected 32"):
        P.LadiVTONPipeline.from_pretrained(folder)


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_what_was_expected(pipe):
    x = _inputs()
    with pytest.raises(ValueError, match=r"has 0 placeholders '\$'.*4 pseudo-words"):
        _run(pipe, x, prompt="a photo of a model wearing a shirt")
    with pytest.raises(ValueError, match="multiples of 8"):
        _run(pipe, {**x, **{k: x[k][..., :44, :] for k in ("image", "mask", "pose_map", "warped_cloth")}})
    with pytest.raises(ValueError, match=r"mask: expected batch 2"):
        _run(pipe, {**x, "mask": x["mask"][:1]})
    with pytest.raises(ValueError, match=r"latents: expected the initial noise \(2, 4, 6, 4\)"):
        _run(pipe, x, latents=torch.randn(2, 4, 5, 4))
    with pytest.raises(ValueError, match=r"image: expected values in \[-1, 1\]"):
        _run(pipe, {**x, "image": x["image"] * 3})
    with pytest.raises(ValueError, match="captions: text_mode='caption' needs one caption"):
        _run(pipe, x, text_mode="caption")
    with pytest.raises(ValueError, match="warped_cloth: the 31-channel UNet needs"):
        _run(pipe, {**x, "warped_cloth": None})


# ----------------------------------------------------------------------------- official layout
def _save_official_layout(tmp, parts) -> tuple:
    sd, clip_dir, ladi = tmp / "sd2-inpainting", tmp / "clip-vit-h-14", tmp / "ladi"
    parts["vae"].save_pretrained(sd / "vae")
    _unet(9).save_pretrained(sd / "unet")  # only its config is read
    text, _, _, _ = P.clip_towers(parts["clip"])
    text.save_pretrained(sd / "text_encoder")
    save_file({f"text_model.{k}": v.contiguous() for k, v in text.state_dict().items()},  # SD2's key names
              sd / "text_encoder" / "model.safetensors")
    merges = read_bpe_merges()  # SD2's tokenizer files: vocab.json + merges.txt, "!" as padding
    (sd / "tokenizer").mkdir()
    (sd / "tokenizer" / "vocab.json").write_text(json.dumps(build_vocab(merges)))
    (sd / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (sd / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
         "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "!"}))
    DDIMScheduler(**P.SD2_SCHEDULER).save_pretrained(sd / "scheduler")
    parts["clip"].hf.save_pretrained(clip_dir)  # the LAION repository: a full CLIPModel
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    (clip_dir / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    ladi.mkdir()
    torch.save(parts["unet"].state_dict(), ladi / "unet_vitonhd.pth")  # pickled, as released
    torch.save(parts["emasc"].state_dict(), ladi / "emasc_vitonhd.pth")
    torch.save(parts["adapter"].state_dict(), ladi / "inversion_adapter_vitonhd.pth")
    return sd, clip_dir, ladi, mean, std


def test_official_layout_stand_ins_load_and_convert(parts, tmp_path):
    sd, clip_dir, ladi, mean, std = _save_official_layout(tmp_path, parts)
    official = P.from_official(sd, clip_dir, ladi)
    official.set_progress_bar_config(disable=True)
    assert official.unet_channels == 31 and official.num_pseudo_words == N_WORDS
    assert official.emasc.config.kind == "nonlinear" and official.config.image_fit == "resize"
    assert official.config.image_mean == mean and official.config.default_inference_steps == 50
    text, image_encoder, _, _ = P.clip_towers(parts["clip"])
    expected = P.LadiVTONPipeline(
        vae=parts["vae"], unet=parts["unet"], text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer"),
        scheduler=DDIMScheduler(**P.SD2_SCHEDULER), image_encoder=image_encoder, adapter=parts["adapter"],
        emasc=parts["emasc"], image_fit="resize", image_mean=mean, image_std=std)
    expected.set_progress_bar_config(disable=True)
    x = _inputs()
    ref = _run(expected, x, guidance_scale=2.0)
    torch.testing.assert_close(_run(official, x, guidance_scale=2.0), ref, rtol=1e-5, atol=1e-6)
    written = P.convert_official(ladi)
    assert sorted(p.name for p in written) == ["emasc_vitonhd.safetensors", "inversion_adapter_vitonhd.safetensors",
                                               "unet_vitonhd.safetensors"]
    assert torch.equal(load_file(ladi / "unet_vitonhd.safetensors")["conv_in.weight"], parts["unet"].conv_in.weight)
    with pytest.raises(FileExistsError, match="overwrite"):
        P.convert_official(ladi)
    for f in ladi.glob("*.pth"):
        f.unlink()
    converted = P.from_official(sd, clip_dir, ladi)
    converted.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_run(converted, x, guidance_scale=2.0), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="dresscode"):
        P.from_official(sd, clip_dir, ladi, dataset="dresscode")


# ----------------------------------------------------------------------------- load(profile)
def test_load_names_the_missing_unet_checkpoint(monkeypatch):
    monkeypatch.delattr(T, "get_trained")
    with pytest.raises(FileNotFoundError, match="no trained try-on UNet checkpoint for profile 'ci'.*pass unet="):
        P.load("ci")


def test_load_builds_from_the_trained_vae_and_emasc(parts):
    vae, _ = V.get_trained_stack("ci", verbose=False)
    em, _ = E.get_trained("ci", kind="nonlinear", verbose=False)
    clip = parts["clip"]
    pipe = P.load("ci", unet=_unet(31), adapter=parts["adapter"], clip=clip)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.default_inference_steps == 10 and pipe.config.label == "vtonlab ci"
    for k, v in vae.state_dict().items():
        assert torch.equal(pipe.vae.state_dict()[k], v), k
    for k, v in em.state_dict().items():
        assert torch.equal(pipe.emasc.emasc.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    x = {"image": torch.rand(1, 3, 64, 48, generator=g) * 2 - 1, "mask": torch.ones(1, 1, 64, 48),
         "pose_map": torch.zeros(1, 18, 64, 48), "warped_cloth": torch.zeros(1, 3, 64, 48), "cloth": torch.zeros(1, 3, 32, 24)}
    assert _run(pipe, x).shape == (1, 3, 64, 48)
