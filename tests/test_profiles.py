import pytest

from vtonlab import profiles
from vtonlab.profiles import PROFILES, get_profile


def test_profiles_exist_and_sizes_grow():
    ci, cpu, gpu = PROFILES["ci"], PROFILES["cpu"], PROFILES["gpu"]
    assert ci.image_size == (64, 48) and cpu.image_size == (128, 96) and gpu.image_size == (256, 192)
    for a, b in [(ci, cpu), (cpu, gpu)]:
        assert a.n_train < b.n_train
        assert all(a.steps[k] < b.steps[k] for k in a.steps)
        assert set(a.steps) == set(b.steps)
    # every profile keeps the 4:3 (H:W) aspect of VITON-HD / MPV
    for p in PROFILES.values():
        assert p.height * 3 == p.width * 4


def test_env_var_selects_profile(monkeypatch):
    monkeypatch.setenv("VTONLAB_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("VTONLAB_PROFILE", "GPU")
    assert get_profile().name == "gpu"


def test_auto_profile_follows_hardware(monkeypatch):
    monkeypatch.delenv("VTONLAB_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    assert get_profile().name == "cpu"
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)
    assert get_profile().name == "gpu"
    monkeypatch.setenv("VTONLAB_PROFILE", "auto")
    assert get_profile().name == "gpu"


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("VTONLAB_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"unknown profile 'laptop'.*VTONLAB_PROFILE.*ci, cpu, gpu"):
        get_profile()
    with pytest.raises(ValueError, match="from argument"):
        get_profile("tiny")


def test_table_and_steps():
    p = get_profile("ci")
    text = str(p)
    assert "64 x 48" in text and "steps: gmm" in text and "float32" in text
    assert "| image size (H x W) | 64 x 48 |" in p._repr_markdown_()
    assert p.steps_for("gmm") == p.steps["gmm"]
    with pytest.raises(KeyError, match="known models"):
        p.steps_for("nope")
    with pytest.raises(TypeError):
        p.steps["gmm"] = 1  # read-only
    assert p.replace(n_train=3).n_train == 3 and p.n_train != 3


def test_mixed_precision_from_dtype():
    assert PROFILES["gpu"].mixed_precision == "bf16"
    assert PROFILES["cpu"].mixed_precision == "no"


def test_device_recipe_applies_the_gpu_recipe_only_on_cuda():
    import torch

    from vtonlab.profiles import device_recipe

    gpu_on_cuda = device_recipe("gpu", "cuda")  # a device name; nothing is allocated
    assert (gpu_on_cuda.bf16, gpu_on_cuda.channels_last, gpu_on_cuda.precision) == (True, True, "bf16 autocast")
    for recipe in (device_recipe("gpu", "cpu"), device_recipe("cpu", "cuda"), device_recipe("ci", "cpu")):
        assert (recipe.bf16, recipe.channels_last, recipe.precision) == (False, False, "float32")
    cpu = device_recipe("gpu", "cpu")
    assert cpu.device == torch.device("cpu")
    with cpu.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    conv = torch.nn.Conv2d(2, 2, 1)
    cpu.prepare(conv)
    assert conv.weight.is_contiguous()  # the default memory format off CUDA
