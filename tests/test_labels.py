import numpy as np
import pytest

from vtonlab.data import labels as lb

LOSSY_CIHP = {"coat", "torso_skin", "glove", "socks"}
LOSSY_ATR = {"belt", "bag"}


def test_label_sets_match_the_papers():
    assert len(lb.CIHP_LABELS) == 20 and len(lb.ATR_LABELS) == 18
    assert lb.CIHP["upper_clothes"] == 5 and lb.CIHP["face"] == 13 and lb.CIHP["right_shoe"] == 19
    assert lb.ATR["upper_clothes"] == 4 and lb.ATR["head"] == 11 and lb.ATR["scarf"] == 17
    assert lb.CIHP_PALETTE.shape == (20, 3) and len({tuple(c) for c in lb.CIHP_PALETTE}) == 20


def test_atr_to_cihp_keeps_names_except_documented_cases():
    for a, name in enumerate(lb.ATR_LABELS):
        c = lb.CIHP_LABELS[lb.ATR_TO_CIHP[a]]
        if name in LOSSY_ATR:
            assert (name, c) in {("belt", "pants"), ("bag", "background")}
        elif name == "head":
            assert c == "face"
        else:
            assert c == name


def test_roundtrip_cihp_through_atr_is_identity_on_lossless_labels():
    parse = np.arange(20, dtype=np.uint8).reshape(4, 5)
    back = lb.cihp_roundtrip_through_atr(parse)
    for v in range(20):
        name = lb.CIHP_LABELS[v]
        got = lb.CIHP_LABELS[back[parse == v][0]]
        if name not in LOSSY_CIHP:
            assert got == name
    assert lb.CIHP_LABELS[back[parse == lb.CIHP["coat"]][0]] == "upper_clothes"
    assert lb.CIHP_LABELS[back[parse == lb.CIHP["torso_skin"]][0]] == "face"


def test_roundtrip_atr_through_cihp_is_identity_except_belt_and_bag():
    atr = np.arange(18, dtype=np.uint8).reshape(3, 6)
    back = lb.cihp_to_atr(lb.atr_to_cihp(atr))
    keep = ~np.isin(atr, [lb.ATR["belt"], lb.ATR["bag"]])
    assert np.array_equal(back[keep], atr[keep])


def test_glove_and_socks_side_follows_image_half():
    parse = np.zeros((2, 8), np.uint8)
    parse[0, :] = lb.CIHP["glove"]
    parse[1, :] = lb.CIHP["socks"]
    atr = lb.cihp_to_atr(parse)
    # the person's left appears on the image's right
    assert (atr[0, :4] == lb.ATR["right_arm"]).all() and (atr[0, 4:] == lb.ATR["left_arm"]).all()
    assert (atr[1, :4] == lb.ATR["right_leg"]).all() and (atr[1, 4:] == lb.ATR["left_leg"]).all()


def test_labels_outside_the_set_name_the_source():
    with pytest.raises(ValueError, match=r"foo\.png.*\[20\].*0\.\.19"):
        lb.cihp_to_atr(np.array([[0, 20]]), source="foo.png")
    with pytest.raises(ValueError, match=r"bar\.png.*\[18, 30\].*0\.\.17"):
        lb.atr_to_cihp(np.array([[18, 30, 1]]), source="bar.png")
    with pytest.raises(ValueError, match="integers"):
        lb.check_labels(np.zeros((2, 2), np.float32), 20, "x")


def test_body25_coco18_mapping_by_name():
    for c, b in enumerate(lb.COCO18_TO_BODY25):
        assert lb.BODY25_NAMES[b] == lb.COCO18_NAMES[c]
    assert lb.BODY25_NAMES[lb.BODY25_MIDHIP] == "mid_hip"
    assert lb.COCO18_TO_BODY25.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]


def test_coco18_to_body25_synthesises_midhip_and_roundtrips():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (18, 2)), rng.uniform(0.2, 1, (18, 1))], 1).astype(np.float32)
    kp[16] = 0  # r_ear missing
    b25 = lb.coco18_to_body25(kp)
    r_hip, l_hip = kp[8], kp[11]
    assert np.allclose(b25[8, :2], (r_hip[:2] + l_hip[:2]) / 2)
    assert b25[8, 2] == pytest.approx(min(r_hip[2], l_hip[2]))
    assert (b25[19:] == 0).all()
    assert np.array_equal(lb.body25_to_coco18(b25.reshape(-1)), kp)
    kp[11, 2] = 0  # l_hip missing -> no MidHip
    assert (lb.coco18_to_body25(kp)[8] == 0).all()


def test_keypoint_shapes_are_checked():
    with pytest.raises(ValueError, match=r"25 keypoints"):
        lb.body25_to_coco18(np.zeros(54))
    with pytest.raises(ValueError, match=r"18 keypoints"):
        lb.coco18_to_body25(np.zeros((17, 3)))


def test_colorize_uses_palette():
    parse = np.array([[0, 5], [13, 19]])
    rgb = lb.colorize(parse)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 1] == lb.CIHP_PALETTE[5]).all() and (rgb[1, 1] == lb.CIHP_PALETTE[19]).all()
    assert lb.labels_of(["hair", "face"]) == (2, 13)
    with pytest.raises(KeyError, match="unknown CIHP label"):
        lb.labels_of(["shirt"])
