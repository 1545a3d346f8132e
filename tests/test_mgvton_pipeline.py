"""Tests for vtonlab.mgvton.pipeline: MG-VTON's four stages composed, its ablation switches and its input checks.

Every stage is a tiny UNTRAINED network at the ci size (64x48): the tests check the wiring (what each stage reads
and what the pipeline returns), not the pictures.
"""

import subprocess
import sys

import pytest
import torch

from vtonlab import gmm
from vtonlab.data.labels import CIHP
from vtonlab.data.representation import body_shape, pose_heatmaps, worn_mask
from vtonlab.mgvton import parsing as P
from vtonlab.mgvton import pipeline as PL
from vtonlab.mgvton import refine as R
from vtonlab.mgvton import warpgan as G
from vtonlab.profiles import get_profile

PROFILE = get_profile("ci")
H, W = PROFILE.image_size
B = 2


def _stages(refine_kw=None, warpgan_kw=None, gmm_variant="gml"):
    torch.manual_seed(0)
    small = dict(width=4, n_blocks=1)
    return (P.ParsingGenerator(P.ParsingConfig.for_profile(PROFILE, ndf=4, **small)),
            gmm.GMM(gmm.GMMConfig.for_profile(PROFILE, gmm_variant, width=4, max_channels=8)),
            G.WarpGANGenerator(G.WarpGANConfig.for_profile(PROFILE, ndf=4, **small, **(warpgan_kw or {}))),
            R.RefineGenerator(R.RefineConfig.for_profile(PROFILE, **small, **(refine_kw or {}))))


def _pipe(**kw):
    use_render = kw.pop("use_render", True)
    return PL.MGVTONPipeline(*_stages(**kw), profile=PROFILE, use_render=use_render)


def _parse(shift: int = 0) -> torch.Tensor:
    """A blocky person in the internal labels, moved ``shift`` pixels right: (H, W) long."""
    p = torch.zeros(H, W, dtype=torch.long)
    c = W // 2 + shift
    p[4:9, c - 4:c + 4] = CIHP["hair"]
    p[9:16, c - 3:c + 3] = CIHP["face"]
    p[16:36, c - 8:c + 8] = CIHP["upper_clothes"]
    p[18:36, c - 12:c - 8] = CIHP["left_arm"]
    p[18:36, c + 8:c + 12] = CIHP["right_arm"]
    p[36:50, c - 7:c + 7] = CIHP["pants"]
    p[50:60, c - 6:c - 1] = CIHP["left_leg"]
    p[50:60, c + 1:c + 6] = CIHP["right_leg"]
    return p


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    parse = torch.stack([_parse(0), _parse(3)])
    source = {"parse": parse, "body_shape": body_shape(parse), "agnostic": torch.rand(B, 3, H, W, generator=g) * 2 - 1,
              "head": torch.rand(B, 3, H, W, generator=g) * 2 - 1}
    cloth_mask = torch.zeros(B, 1, H, W)
    cloth_mask[:, :, 10:54, 8:40] = 1
    colour = torch.rand(B, 3, 1, 1, generator=g) * 2 - 1
    cloth = cloth_mask * colour + (1 - cloth_mask)  # a coloured garment on white
    kp = torch.rand(B, 18, 3, generator=g) * torch.tensor([W - 1.0, H - 1.0, 1.0])
    kp[..., 2] = 1.0
    kp[1, 5, 2] = 0.0  # one missing keypoint
    return source, cloth, cloth_mask, pose_heatmaps(kp, (H, W), "mgvton"), kp


def _spy(monkeypatch, module, store: list):
    """Record the positional inputs of ``module``'s forward calls in ``store``."""
    forward = module.forward

    def spy(*args):
        store.append(args)
        return forward(*args)

    monkeypatch.setattr(module, "forward", spy)


# ------------------------------------------------------------------ outputs


def test_outputs_keys_shapes_dtypes_ranges_and_stage_wiring():
    pipe = _pipe()
    source, cloth, cloth_mask, pose, _ = _inputs()
    out = pipe(source, cloth, cloth_mask, pose)
    assert set(PL.OUTPUT_KEYS) <= set(out)
    shapes = {"parsing_logits": (B, 20, H, W), "grid": (B, H, W, 2), "warped_cloth": (B, 3, H, W),
              "warped_mask": (B, 1, H, W), "coarse": (B, 3, H, W), "composition_mask": (B, 1, H, W), "tryon": (B, 3, H, W)}
    for key, shape in shapes.items():
        assert tuple(out[key].shape) == shape, key
        assert out[key].dtype == torch.float32 and not out[key].requires_grad, key
        assert torch.isfinite(out[key]).all(), key
    assert out["parsing"].dtype == torch.long and tuple(out["parsing"].shape) == (B, H, W)
    assert 0 <= out["parsing"].min() and out["parsing"].max() < 20
    for key in ("warped_cloth", "coarse", "tryon"):
        assert out[key].min() >= -1 - 1e-6 and out[key].max() <= 1 + 1e-6, key
    for key in ("warped_mask", "composition_mask"):
        assert out[key].min() >= 0 and out[key].max() <= 1, key
    assert out["render"] == "mask" and not pipe.training
    m = out["composition_mask"]
    assert torch.allclose(out["tryon"], m * out["warped_cloth"] + (1 - m) * out["coarse"], atol=1e-6)
    # each stage reads what the one before produced, in the documented layout
    with torch.no_grad():
        logits = pipe.parsing_model(P.parsing_input(source, cloth, pose))
        assert torch.allclose(out["parsing_logits"], logits) and torch.equal(out["parsing"], logits.argmax(1))
        person = gmm.person_representation({"body_shape": body_shape(out["parsing"]),
                                            "worn_mask": worn_mask(out["parsing"])}, "gml")
        grid, _ = pipe.gml_model(person, cloth_mask * 2 - 1)
        warped, wmask = gmm.warp_garment(grid, {"cloth": cloth, "cloth_mask": cloth_mask})
        assert torch.allclose(out["grid"], grid) and torch.allclose(out["warped_cloth"], warped)
        assert torch.allclose(out["warped_mask"], wmask)
        coarse = pipe.warpgan_model(G.warpgan_input(warped, source["agnostic"], pose, out["parsing"]), source["parse"])
        assert torch.allclose(out["coarse"], coarse, atol=1e-6)


def test_pose_map_drawn_from_keypoints_when_not_given():
    pipe = _pipe()
    source, cloth, cloth_mask, pose, kp = _inputs()
    a = pipe(source, cloth, cloth_mask, pose)
    b = pipe(source, cloth, cloth_mask, None, target_keypoints=kp)
    assert torch.equal(a["tryon"], b["tryon"]) and torch.equal(a["parsing"], b["parsing"])


# ------------------------------------------------------------------ ablation switches


def test_without_render_tryon_is_coarse_by_constructor_or_call():
    source, cloth, cloth_mask, pose, _ = _inputs()
    off = _pipe(use_render=False)
    out = off(source, cloth, cloth_mask, pose)
    assert torch.equal(out["tryon"], out["coarse"]) and out["render"] == "off"
    assert torch.equal(out["composition_mask"], torch.zeros(B, 1, H, W))
    on = off(source, cloth, cloth_mask, pose, use_render=True)  # per-call override of the constructor's default
    assert on["render"] == "mask" and not torch.equal(on["tryon"], on["coarse"])
    full = _pipe()
    assert torch.equal(full(source, cloth, cloth_mask, pose, use_render=False)["tryon"], on["coarse"])


@pytest.mark.parametrize("value", [1.0, 0.0])
def test_forced_composition_mask_selects_warped_cloth_or_coarse(monkeypatch, value):
    pipe = _pipe()
    source, cloth, cloth_mask, pose, _ = _inputs()
    monkeypatch.setattr(pipe.refine_model, "forward", lambda x: torch.full((x.shape[0], 1, H, W), value))
    out = pipe(source, cloth, cloth_mask, pose)
    expected = out["warped_cloth"] if value == 1.0 else out["coarse"]
    assert torch.equal(out["tryon"], expected)
    assert torch.equal(out["composition_mask"], torch.full((B, 1, H, W), value))
    assert not torch.equal(out["warped_cloth"], out["coarse"])  # so the two cases are told apart


def test_without_mask_render_returns_the_image_directly():
    pipe = _pipe(refine_kw=dict(composition=False))
    source, cloth, cloth_mask, pose, _ = _inputs()
    out = pipe(source, cloth, cloth_mask, pose)
    with torch.no_grad():
        direct = pipe.refine_model(R.refine_input(out["warped_cloth"], out["coarse"], pose))
    assert out["render"] == "direct" and torch.allclose(out["tryon"], direct)
    assert torch.equal(out["composition_mask"], torch.zeros(B, 1, H, W))


def test_parsing_override_reaches_gml_and_warpgan(monkeypatch):
    pipe = _pipe()
    source, cloth, cloth_mask, pose, _ = _inputs()
    gml_calls, warpgan_calls = [], []
    _spy(monkeypatch, pipe.gml_model, gml_calls)
    _spy(monkeypatch, pipe.warpgan_model, warpgan_calls)
    override = torch.stack([_parse(-4), _parse(5)])
    predicted = pipe(source, cloth, cloth_mask, pose)["parsing"]
    assert not torch.equal(worn_mask(predicted), worn_mask(override))  # the check below can tell them apart
    out = pipe(source, cloth, cloth_mask, pose, parsing_override=override)
    assert torch.equal(out["parsing"], override)
    person = gml_calls[-1][0]
    assert person.shape == (B, 2, H, W)
    assert torch.equal(person[:, 1:2], worn_mask(override) * 2 - 1)
    assert torch.allclose(person[:, 0:1], body_shape(override) * 2 - 1)
    x, source_parse = warpgan_calls[-1]
    assert torch.equal(x[:, 24:44], P.one_hot_parsing(override))  # the synthesized parsing slot
    assert torch.equal(source_parse, source["parse"])  # the feature warp starts from the SOURCE parsing


def test_cpvton_gmm_in_place_of_gml_reads_target_keypoints(monkeypatch):
    pipe = _pipe(gmm_variant="cpvton")
    source, cloth, cloth_mask, pose, kp = _inputs()
    calls = []
    _spy(monkeypatch, pipe.gml_model, calls)
    out = pipe(source, cloth, cloth_mask, pose, target_keypoints=kp)
    person, garment = calls[-1]
    assert person.shape == (B, 22, H, W) and garment.shape == (B, 3, H, W)
    assert torch.allclose(person[:, 0:1], body_shape(out["parsing"]) * 2 - 1)
    assert torch.equal(person[:, 1:4], source["head"])
    assert torch.equal(person[:, 4:], pose_heatmaps(kp, (H, W), "cpvton"))  # CP-VTON squares, not the discs
    assert not torch.equal(person[:, 4:], pose)
    with pytest.raises(ValueError, match="target_keypoints"):
        pipe(source, cloth, cloth_mask, pose)
    with pytest.raises(KeyError, match="head"):
        pipe({k: v for k, v in source.items() if k != "head"}, cloth, cloth_mask, pose, target_keypoints=kp)


# ------------------------------------------------------------------ bad input


def _bad_cases():
    source, cloth, cloth_mask, pose, kp = _inputs()
    bad_labels = torch.stack([_parse(0), _parse(0)])
    bad_labels[0, 0, 0] = 25
    return {
        "pose_17": (dict(target_pose_map=pose[:, :17]), r"target_pose_map: expected \(2, 18, 64, 48\).*18 channels"),
        "keypoints_17": (dict(target_pose_map=None, target_keypoints=kp[:, :17]), r"target_keypoints: expected \(2, 18, 3\)"),
        "keypoints_2d": (dict(target_keypoints=kp[0]), r"target_keypoints: expected \(2, 18, 3\)"),
        "no_pose": (dict(target_pose_map=None), "target_pose_map.*target_keypoints"),
        "override_range": (dict(parsing_override=bad_labels), r"parsing_override: label values \[25\].*0\.\.19"),
        "override_float": (dict(parsing_override=bad_labels.float()), "parsing_override: expected an integer label map"),
        "override_shape": (dict(parsing_override=source["parse"][:1]), r"parsing_override: expected \(2, 64, 48\)"),
        "cloth_size": (dict(cloth=torch.ones(B, 3, 32, 24), cloth_mask=torch.ones(B, 1, 32, 24)),
                       r"cloth: expected the profile 'ci' image size 64x48, got 32x24"),
        "cloth_unbatched": (dict(cloth=cloth[0]), r"cloth: expected a batch .*\(B, 3, 64, 48\)"),
        "mask_batch": (dict(cloth_mask=cloth_mask[:1]), r"cloth_mask: expected a float \(2, 1, 64, 48\)"),
        "pose_batch": (dict(target_pose_map=pose[:1]), r"target_pose_map: expected a float \(2, 18, 64, 48\)"),
        "source_batch": (dict(source={**source, "parse": source["parse"][:1]}), r"source\['parse'\]: expected \(2, 64, 48\)"),
        "source_labels": (dict(source={**source, "parse": bad_labels}), r"source\['parse'\]: label values \[25\]"),
        "agnostic_batch": (dict(source={**source, "agnostic": source["agnostic"][:1]}), r"source\['agnostic'\]"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_inputs_name_what_was_expected(case):
    pipe = _pipe()
    source, cloth, cloth_mask, pose, _ = _inputs()
    args = dict(source=source, cloth=cloth, cloth_mask=cloth_mask, target_pose_map=pose)
    change, message = _bad_cases()[case]
    args.update(change)
    with pytest.raises(ValueError, match=message):
        pipe(**args)


def test_missing_source_key_and_bad_use_render():
    pipe = _pipe()
    source, cloth, cloth_mask, pose, _ = _inputs()
    with pytest.raises(KeyError, match="agnostic"):
        pipe({k: v for k, v in source.items() if k != "agnostic"}, cloth, cloth_mask, pose)
    with pytest.raises(ValueError, match="use_render"):
        pipe(source, cloth, cloth_mask, pose, use_render="no")


def test_constructor_checks_stages():
    parsing, gml, warpgan, refine = _stages()
    with pytest.raises(TypeError, match="refine_model: expected a vtonlab.mgvton.refine.RefineGenerator"):
        PL.MGVTONPipeline(parsing, gml, warpgan, warpgan, profile=PROFILE)
    other = R.RefineGenerator(R.RefineConfig(image_size=(32, 24), width=4, n_blocks=1))
    with pytest.raises(ValueError, match=r"refine_model: its config's image_size is \(32, 24\).*\(64, 48\)"):
        PL.MGVTONPipeline(parsing, gml, warpgan, other, profile=PROFILE)
    squares = R.RefineGenerator(R.RefineConfig.for_profile(PROFILE, width=4, n_blocks=1, pose_style="cpvton"))
    with pytest.raises(ValueError, match="pose_style"):
        PL.MGVTONPipeline(parsing, gml, warpgan, squares, profile=PROFILE)
    ladi = gmm.GMM(gmm.GMMConfig.for_profile(PROFILE, "ladi", width=4, max_channels=8))
    with pytest.raises(ValueError, match="person='ladi'"):
        PL.MGVTONPipeline(parsing, ladi, warpgan, refine, profile=PROFILE)
    pipe = PL.MGVTONPipeline(parsing, gml, warpgan, refine, profile=PROFILE)
    assert not any(m.training for m in pipe.modules())
    with pytest.raises(RuntimeError, match="inference only"):
        pipe.train()


# ------------------------------------------------------------------ load


def test_load_builds_the_pipeline_from_each_stage_get_trained(monkeypatch):
    parsing, gml, warpgan, refine = _stages()
    asked = []

    def fake(name, model):
        def get_trained(profile):
            asked.append((name, profile.name))
            return model, f"{name}-checkpoint"

        return get_trained

    monkeypatch.setattr(P, "get_trained", fake("parsing", parsing))
    monkeypatch.setattr(gmm, "get_trained_gml", fake("gml", gml))
    monkeypatch.setattr(G, "get_trained", fake("warpgan", warpgan))
    monkeypatch.setattr(R, "get_trained", fake("refine", refine))
    import vtonlab.mgvton

    pipe = vtonlab.mgvton.load("ci")
    assert sorted(asked) == [("gml", "ci"), ("parsing", "ci"), ("refine", "ci"), ("warpgan", "ci")]
    assert pipe.parsing_model is parsing and pipe.gml_model is gml and pipe.warpgan_model is warpgan
    assert pipe.refine_model is refine and pipe.checkpoints["refine"] == "refine-checkpoint"


def test_package_import_needs_no_torch_and_load_is_lazy():
    code = "import sys, vtonlab.mgvton; assert 'torch' not in sys.modules, 'importing vtonlab.mgvton imported torch'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    import vtonlab.mgvton

    assert vtonlab.mgvton.load is PL.load and vtonlab.mgvton.MGVTONPipeline is PL.MGVTONPipeline
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vtonlab.mgvton.nothing  # noqa: B018
