"""Tests for vtonlab.mgvton.parsing: MG-VTON's conditional parsing stage, its metrics and baselines."""

import math

import pytest
import torch
from torch import nn

from vtonlab.data.labels import CIHP
from vtonlab.mgvton import parsing as P
from vtonlab.profiles import get_profile

H, W = 64, 48


def _source(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    parse = torch.randint(0, 20, (b, H, W), generator=g)
    parse[:, 2:8, 10:30] = CIHP["hair"]
    parse[:, 8:16, 14:26] = CIHP["face"]
    return {"parse": parse, "body_shape": torch.rand(b, 1, H, W, generator=g)}, g


def _keypoints(b, g, missing=(3, 16)):
    kp = torch.rand(b, 18, 3, generator=g) * torch.tensor([W - 1.0, H - 1.0, 0.0]) + torch.tensor([0, 0, 1.0])
    kp[:, list(missing)] = 0.0
    return kp


# ------------------------------------------------------------------ config and inputs


def test_config_per_profile_and_paper_defaults():
    gpu = P.ParsingConfig.for_profile("gpu")
    assert (gpu.width, gpu.n_blocks, gpu.n_down, gpu.ndf, gpu.n_layers_d, gpu.num_d) == (64, 9, 3, 64, 3, 2)
    assert gpu.norm == "batch" and gpu.d_norm == "instance" and gpu.image_size == (256, 192)
    assert gpu.lr == 2e-4 and gpu.betas == (0.5, 0.999) and gpu.pose_style == "mgvton"
    ci, cpu = P.ParsingConfig.for_profile("ci"), P.ParsingConfig.for_profile("cpu")
    assert (ci.width, ci.n_blocks, ci.ndf) == (16, 2, 16) and (cpu.width, cpu.n_blocks, cpu.ndf) == (32, 4, 32)
    assert ci.steps == get_profile("ci").steps_for("parsing") and ci.image_size == (64, 48)
    assert P.ParsingConfig.for_profile("ci", n_blocks=1).n_blocks == 1
    assert P.ParsingConfig.for_profile("ci").to_dict()["image_size"] == [64, 48]
    with pytest.raises(ValueError, match="multiples of 8"):
        P.ParsingConfig(image_size=(60, 48))
    with pytest.raises(ValueError, match="loss weights"):
        P.ParsingConfig(adv_weight=-1.0)
    with pytest.raises(ValueError, match="d_norm"):
        P.ParsingConfig(d_norm="layer")


def test_parsing_input_channel_order():
    assert P.INPUT_CHANNELS == 24 and [n for n, _ in P.INPUT_LAYOUT] == ["hair", "face", "body_shape", "cloth", "target_pose"]
    src, g = _source()
    cloth = torch.rand(2, 3, H, W, generator=g) * 2 - 1
    pose = torch.rand(2, 18, H, W, generator=g)
    x = P.parsing_input(src, cloth, pose)
    assert x.shape == (2, 24, H, W)
    parse = src["parse"]
    assert torch.equal(x[:, 0], (parse == 2).float() * 2 - 1) and (x[:, 0] == 1).any()
    assert torch.equal(x[:, 1], (parse == 13).float() * 2 - 1) and (x[:, 1] == 1).any()
    assert torch.equal(x[:, 2:3], src["body_shape"] * 2 - 1)
    assert torch.equal(x[:, 3:6], cloth) and torch.equal(x[:, 6:24], pose)
    one = P.parsing_input({"parse": parse[1], "body_shape": src["body_shape"][1]}, cloth[1], pose[1])
    assert torch.equal(one, x[1:2])


def test_bad_inputs_name_what_was_expected():
    src, g = _source()
    cloth, pose = torch.zeros(2, 3, H, W), torch.zeros(2, 18, H, W)
    with pytest.raises(ValueError, match=r"target_pose_map: expected \(2, 18, 64, 48\)"):
        P.parsing_input(src, cloth, torch.zeros(2, 17, H, W))
    with pytest.raises(ValueError, match=r"cloth: expected \(2, 3, 64, 48\).*got \(2, 3, 32, 24\)"):
        P.parsing_input(src, torch.zeros(2, 3, 32, 24), pose)
    bad = dict(src, parse=src["parse"].clone())
    bad["parse"][0, 0, 0] = 20
    with pytest.raises(ValueError, match=r"source parse: label values \[20\] outside the internal label set 0..19"):
        P.parsing_input(bad, cloth, pose)
    with pytest.raises(ValueError, match="integer label map"):
        P.parsing_input(dict(src, parse=src["parse"].float()), cloth, pose)
    with pytest.raises(KeyError, match="body_shape"):
        P.parsing_input({"parse": src["parse"]}, cloth, pose)
    kp = _keypoints(2, g)
    with pytest.raises(ValueError, match=r"target keypoints: expected \(2, 18, 3\) COCO-18"):
        P.pose_warp_parsing(src["parse"], kp, kp[:, :17])
    with pytest.raises(ValueError, match=r"true_labels: label values \[-1\]"):
        P.parsing_miou(src["parse"], src["parse"] - 1)
    with pytest.raises(ValueError, match="one shape"):
        P.parsing_miou(src["parse"], src["parse"][0])
    with pytest.raises(ValueError, match=r"target parse: label values \[25\]"):
        P.parsing_losses(torch.zeros(2, 20, H, W), torch.full((2, H, W), 25), torch.zeros(2, 24, H, W), None,
                         P.ParsingConfig.for_profile("ci"))


# ------------------------------------------------------------------ metrics and baselines


def test_miou_on_hand_made_maps():
    t = torch.tensor([[0, 0, 1, 1]])
    miou, per = P.parsing_miou(t, t)
    assert miou == 1.0 and per[0] == 1 and per[1] == 1 and per[2:].isnan().all()
    # class 0: 1 / 2, class 1: 2 / 3; the 18 classes absent from both are ignored
    miou, per = P.parsing_miou(torch.tensor([[0, 1, 1, 1]]), t)
    assert per[0].item() == pytest.approx(0.5) and per[1].item() == pytest.approx(2 / 3)
    assert miou == pytest.approx((0.5 + 2 / 3) / 2) and int(per.isnan().sum()) == 18
    swapped, per = P.parsing_miou(torch.tensor([[2, 2, 1, 1]]), torch.tensor([[1, 1, 2, 2]]))
    assert swapped == 0.0 and per[1] == 0 and per[2] == 0
    # a class only in the prediction counts (IoU 0); the IoU is over all pixels of the batch, not a mean of images
    miou, per = P.parsing_miou(torch.tensor([[[0, 0, 0, 3]], [[1, 1, 1, 1]]]), torch.tensor([[[0, 0, 0, 0]], [[1, 1, 1, 0]]]))
    assert per[3] == 0 and per[0].item() == pytest.approx(3 / 5) and per[1].item() == pytest.approx(3 / 4)
    assert miou == pytest.approx((3 / 5 + 3 / 4 + 0) / 3)
    cm = P.confusion_matrix(torch.tensor([[0, 1, 1, 1]]), t)
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 2 and cm.sum() == 4


def test_pose_warp_baseline_is_the_identity_for_equal_poses_and_moves_with_the_keypoints():
    src, g = _source(3)
    parse = src["parse"]
    kp = _keypoints(3, g)
    assert torch.equal(P.pose_warp_parsing(parse, kp, kp), parse)
    assert torch.equal(P.pose_warp_parsing(parse, kp, kp, anchors=False), parse)
    assert torch.equal(P.source_parsing_baseline(parse), parse)
    # every keypoint 4 px to the right: the parsing moves 4 px right, background enters on the left
    moved_kp = kp.clone()
    moved_kp[..., 0] += 4 * (kp[..., 2] > 0)
    moved = P.pose_warp_parsing(parse, kp, moved_kp, anchors=False)
    assert torch.equal(moved[..., 4:], parse[..., :-4]) and (moved[..., :4] == 0).all()
    # fewer than 3 keypoints in both poses and no anchors: the source parsing is kept
    few = kp.clone()
    few[:, 2:, 2] = 0
    assert torch.equal(P.pose_warp_parsing(parse, few, moved_kp, anchors=False), parse)
    # with the frame anchors the corners stay put while the body moves
    anchored = P.pose_warp_parsing(parse, kp, moved_kp)
    assert torch.equal(anchored[:, 0, 0], parse[:, 0, 0]) and not torch.equal(anchored, parse)


# ------------------------------------------------------------------ networks and losses


def test_generator_and_losses():
    torch.manual_seed(0)
    cfg = P.ParsingConfig.for_profile("ci")
    gen, disc = P.ParsingGenerator(cfg), P.build_discriminator(cfg)
    bns = [m for m in gen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 2 * cfg.n_down + 2 * cfg.n_blocks and len(gen.blocks) == cfg.n_blocks
    src, g = _source()
    x = P.parsing_input(src, torch.zeros(2, 3, H, W), torch.zeros(2, 18, H, W))
    logits = gen(x)
    assert logits.shape == (2, 20, H, W) and gen.predict(x).shape == (2, H, W)
    assert disc.in_channels == 44 and len(disc(P.discriminator_input(x, logits.softmax(1)))) == cfg.num_d
    target = src["parse"]
    out = P.parsing_losses(logits, target, x, disc, cfg)
    assert out["ce"].item() == pytest.approx(nn.functional.cross_entropy(logits, target).item(), rel=1e-6)
    assert torch.allclose(out["loss_g"], out["adv_g"] + out["l1"] + out["ce"])
    # the discriminator loss does not reach the generator (its fakes are detached)
    out["loss_d"].backward()
    assert all(p.grad is None for p in gen.parameters()) and any(p.grad is not None for p in disc.parameters())
    # a confident, correct parsing: cross-entropy and L1 near 0; weights are applied as named
    perfect = 30.0 * P.one_hot_parsing(target)
    best = P.parsing_losses(perfect, target, x, disc, P.ParsingConfig.for_profile("ci", adv_weight=0.0, l1_weight=2.0))
    assert best["ce"] < 1e-6 and best["l1"] < 1e-6 and best["adv_d"] == 0
    assert torch.allclose(best["loss_g"], 2 * best["l1"] + best["ce"])
    # L1 of a uniform softmax: sum_c |1/20 - onehot| = 2 (1 - 1/20)
    flat = P.parsing_losses(torch.zeros(2, 20, H, W), target, x, disc, cfg)
    assert flat["l1"].item() == pytest.approx(2 * (1 - 1 / 20), rel=1e-5)
    assert flat["ce"].item() == pytest.approx(math.log(20), rel=1e-5)


# ------------------------------------------------------------------ data, training, checkpoint


def _small_profile():
    return get_profile("ci").replace(n_train=8, n_test=4)


def test_multipose_pairs_read_the_synthvton_cache(tmp_cache):
    prof = _small_profile()
    pairs = P.multipose_pairs("train", prof)
    assert len(pairs) == 8  # 4 groups of 2 poses: every ordered pair
    item = pairs[0]
    assert torch.equal(item["source"]["cloth"], item["target"]["cloth"])  # same garment
    assert not torch.equal(item["source"]["pose_keypoints"], item["target"]["pose_keypoints"])  # another pose
    data = P.preload_pairs(pairs, limit=6)
    assert len(data) == 6 and data.names[0] == f"{item['source']['im_name']}->{item['target']['im_name']}"
    assert torch.equal(data.tensors["target_pose_map"][0], item["target"]["pose_map"])
    assert torch.equal(data.tensors["source_parse"][0], item["source"]["parse"])
    assert data.tensors["source_body_shape"].shape == (6, 1, 64, 48)
    assert len(P.preload_pairs(data, limit=3)) == 3


def test_tiny_training_caches_and_reloads(tmp_cache):
    prof = _small_profile()
    cfg = P.ParsingConfig.for_profile(prof, steps=4, batch_size=4, n_train=8)
    model, ckpt = P.get_trained(prof, config=cfg, progress=False, verbose=False)
    assert ckpt.trained and ckpt.name == "mgvton-parsing"
    assert set(ckpt.metrics) >= {"test_miou", "test_miou_source", "test_miou_pose_warp", "test_iou_per_class", "n_test"}
    assert ckpt.metrics["n_test"] == 4 and 0 <= ckpt.metrics["test_miou"] <= 1
    from vtonlab.data import synthvton_params

    assert ckpt.config["data"] == synthvton_params(prof) and ckpt.config["steps"] == 4
    losses = ckpt.history.losses
    assert len(losses["loss_g"]) == 4 and all(math.isfinite(v) for v in losses["loss_g"] + losses["loss_d"])
    again, ckpt2 = P.get_trained(prof, config=cfg, verbose=False)
    assert not ckpt2.trained and ckpt2.source == "cache"
    te = P.preload_pairs(P.multipose_pairs("test", prof))
    x = P.parsing_input(P.source_of(te.batch(0, 2)), te.tensors["cloth"][:2], te.tensors["target_pose_map"][:2])
    assert torch.equal(model(x), again(x))
    res = P.evaluate_parsing(again, te, keep=True)
    assert res["model"]["miou"] == pytest.approx(ckpt.metrics["test_miou"], rel=1e-9)
    assert res["source"]["miou"] == pytest.approx(P.parsing_miou(te.tensors["source_parse"], te.tensors["target_parse"])[0])
    assert res["predictions"]["pose_warp"].shape == (4, 64, 48)


def test_training_lowers_the_cross_entropy(tmp_cache):
    prof = _small_profile()
    cfg = P.ParsingConfig.for_profile(prof, steps=12, batch_size=4, n_train=8, n_blocks=1, lr=1e-3)
    _, history = P.train(cfg, P.multipose_pairs("train", prof), progress=False)
    ce = history.losses["ce"]
    assert sum(ce[-3:]) / 3 < 0.8 * sum(ce[:3]) / 3
    with pytest.raises(ValueError, match="at least one batch of 16"):
        P.train(P.ParsingConfig.for_profile(prof, batch_size=16), P.multipose_pairs("train", prof), progress=False)
