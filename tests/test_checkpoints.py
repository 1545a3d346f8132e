import json

import pytest
import torch
from torch import nn

from vtonlab import checkpoints as ck
from vtonlab.checkpoints import CheckpointError, load_checkpoint, load_or_train, save_checkpoint
from vtonlab.train import History


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))


def test_round_trip(tmp_path):
    net = small_net()
    h = History()
    h.append(1, {"loss": 2.0})
    h.append(2, {"loss": 1.0})
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": net}, name="m", config={"width": 4, "k": (3, 3)},
                           profile="ci", metrics={"iou": 0.5}, history=h, command="pytest")
    c = load_checkpoint(path, {"width": 4, "k": [3, 3]})
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    c.load_into(other, prefix="net")
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert c.metrics == {"iou": 0.5} and c.step == 2 and c.history.losses["loss"] == [2.0, 1.0]
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["sha256"] == ck.sha256_file(path) and manifest["command"] == "pytest"
    assert manifest["n_parameters"] == sum(v.numel() for v in net.state_dict().values())
    # the weights file is plain safetensors: no pickle anywhere
    assert path.read_bytes()[8:9] == b"{"


def test_config_mismatch_names_file_and_key(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={"width": 4, "lr": 1e-3})
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*width: checkpoint 4, requested 8"):
        load_checkpoint(path, {"width": 8, "lr": 1e-3})


def test_hash_mismatch_and_truncation(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"m\.safetensors has sha256 .* corrupt"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match=r"m\.safetensors is \d+ bytes .*truncated"):
        load_checkpoint(path)


def test_corrupt_or_missing_manifest(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={})
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"m\.json is not valid JSON"):
        load_checkpoint(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match=r"m\.json is missing"):
        load_checkpoint(path)


def test_truncated_file_with_matching_manifest_is_unreadable(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={})
    manifest = json.loads(path.with_suffix(".json").read_text())
    cut = path.read_bytes()[:100]
    path.write_bytes(cut)
    manifest.update(size_bytes=len(cut), sha256=ck.sha256_file(path))  # a forged manifest
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"m\.safetensors is not a readable safetensors file"):
        load_checkpoint(path)


def test_load_into_wrong_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={})
    c = load_checkpoint(path)
    wider = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"m\.safetensors does not fit Sequential.*shape mismatch"):
        c.load_into(wider, prefix="net")
    with pytest.raises(CheckpointError, match="no weights under prefix 'gen'"):
        c.load_into(wider, prefix="gen")


def test_load_or_train_trains_once_then_loads(tmp_cache):
    calls = []

    def train_fn():
        calls.append(1)
        return {"net": small_net()}, {"score": 1.0}

    a = load_or_train("toy", {"width": 4}, train_fn, profile="ci", verbose=False)
    b = load_or_train("toy", {"width": 4}, train_fn, profile="ci", verbose=False)
    assert a.trained and not b.trained and b.source == "cache" and len(calls) == 1
    assert b.config["profile"] == "ci"
    # another config or profile -> trains again
    load_or_train("toy", {"width": 5}, train_fn, profile="ci", verbose=False)
    load_or_train("toy", {"width": 4}, train_fn, profile="cpu", verbose=False)
    assert len(calls) == 3
    load_or_train("toy", {"width": 4}, train_fn, profile="ci", force_train=True, verbose=False)
    assert len(calls) == 4


def test_shipped_checkpoint_preferred_and_mismatch_skipped(tmp_cache, capsys):
    def train_fn():
        return {"net": small_net()}, {"score": 2.0}

    first = load_or_train("toy", {"width": 4}, train_fn, profile="ci", verbose=False)
    shipped = ck.ship(first)
    assert shipped == ck.shipped_path("toy", "ci")
    with pytest.raises(FileExistsError, match="--overwrite"):
        ck.ship(first)
    again = load_or_train("toy", {"width": 4}, lambda: pytest.fail("should not train"), profile="ci", verbose=False)
    assert again.source == "shipped"
    # a shipped checkpoint of another config is reported and skipped
    load_or_train("toy", {"width": 6}, train_fn, profile="ci")
    assert "has a different config (width: checkpoint 4, requested 6)" in capsys.readouterr().out
    # a corrupt shipped checkpoint is an error naming it, not silently retrained
    shipped.write_bytes(shipped.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="toy-ci.safetensors"):
        load_or_train("toy", {"width": 4}, train_fn, profile="ci", verbose=False)


def test_bad_train_fn_result(tmp_cache):
    with pytest.raises(TypeError, match="must return"):
        load_or_train("toy", {}, lambda: small_net(), profile="ci", verbose=False)


def test_save_refuses_overwrite_when_asked(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", {"net": small_net()}, name="m", config={})
    with pytest.raises(FileExistsError, match="m.safetensors already exists"):
        save_checkpoint(p, {"net": small_net()}, name="m", config={}, overwrite=False)
