"""Every shipped checkpoint is traceable: made by `python -m vtonlab train NAME --profile P`, listed in data/README.md."""

from __future__ import annotations

import json
import re

from vtonlab import paths
from vtonlab.commands.train import MODELS

SHIPPED = sorted(paths.shipped_checkpoints_dir().glob("*.json"))


def _manifest(path):
    return json.loads(path.read_text())


def test_there_are_shipped_checkpoints():
    assert len(SHIPPED) >= 3, f"expected shipped manifests in {paths.shipped_checkpoints_dir()}"


def test_every_shipped_manifest_records_a_train_command_that_exists():
    for path in SHIPPED:
        m = _manifest(path)
        command = m.get("command", "")
        # --reuse: the same command, loading what an interrupted run of it had already trained into the cache;
        # --variants / --seeds: the part of a family it trained (this checkpoint must be in that part)
        match = re.fullmatch(r"python -m vtonlab train (\S+) --profile (\S+)((?: --(?:ship|overwrite|reuse)"
                             r"| --variants \S+| --seeds \S+)*)", command)
        assert match, f"{path}: command {command!r} is not `python -m vtonlab train NAME --profile P [--ship] ...`"
        model, profile, options = match.group(1), match.group(2), match.group(3).split()
        assert model in MODELS, f"{path}: `{command}` names model {model!r}, which `vtonlab train` does not know"
        assert profile == m["profile"] == path.stem.rsplit("-", 1)[1], f"{path}: profile of the command and the manifest differ"
        name = m["name"]
        seed = int(name.rsplit("_seed", 1)[1]) if "_seed" in name else 0
        if "--seeds" in options:
            seeds = [int(v) for v in options[options.index("--seeds") + 1].split(",")]
            assert seed in seeds, f"{path}: `{command}` trains seeds {seeds}, not this checkpoint's {seed}"
        if "--variants" in options:
            assert model == "ladi_ablation", f"{path}: `{command}`: only ladi_ablation takes --variants"
            variants = options[options.index("--variants") + 1].split(",")
            assert _ladi_variant(name) in variants, f"{path}: `{command}` trains variants {variants}, not {name}'s"


def _ladi_variant(name: str) -> str:
    """The ladi_ablation variant a checkpoint belongs to: ``ladi_tryon_nogarment_seed1`` -> nogarment,
    ``ladi_tryon_seed2`` -> full, ``ladi_adapter_n4`` -> n4 (the adapter the variant needs)."""
    base = name.rsplit("_seed", 1)[0]
    if base.startswith("ladi_adapter_"):
        return base.removeprefix("ladi_adapter_")
    return base.removeprefix("ladi_tryon").removeprefix("_") or "full"


def test_every_checkpoint_trained_on_synthvton_carries_the_data_key():
    from vtonlab.data import synth, synthvton_params

    for path in SHIPPED:
        m = _manifest(path)
        cfg = m["config"]
        if path.stem.startswith(("gmm", "gml")):
            assert cfg.get("data") == synthvton_params(m["profile"]), f"{path}: data key differs from the profile's SynthVTON"
        if path.stem.startswith("clip"):
            assert cfg.get("renderer_version") == synth.RENDERER_VERSION, f"{path}: renderer version missing or stale"


def test_data_readme_lists_every_shipped_file_with_its_command():
    readme = (paths.repo_root() / "data" / "README.md").read_text()
    for path in SHIPPED:
        m = _manifest(path)
        weights = path.with_suffix(".safetensors").name
        line = next((ln for ln in readme.splitlines() if f"`{weights}`" in ln), None)
        assert line is not None, f"data/README.md does not list {weights}"
        assert f"`{m['command']}`" in line, f"data/README.md lists {weights} without its command `{m['command']}`"


def test_ship_without_overwrite_fails_before_training(tmp_path, monkeypatch):
    """`train gmm_ablation --ship` over shipped files must stop at once, not after training every variant."""
    import pytest

    from vtonlab.commands import train as train_cmd

    monkeypatch.setattr(paths, "shipped_checkpoints_dir", lambda: tmp_path)
    (tmp_path / "gmm_ablation_tps_rgb-cpu.safetensors").write_bytes(b"x")
    assert [f.name for f in train_cmd.shipped_conflicts("gmm_ablation", "cpu")] == ["gmm_ablation_tps_rgb-cpu.safetensors"]
    assert train_cmd.shipped_conflicts("gmm", "cpu") == []  # gmm is not a family: gmm_ablation files are not its own

    def never(*a, **k):
        raise AssertionError("trained although shipping was going to fail")

    monkeypatch.setattr(train_cmd, "available", lambda: {"gmm_ablation": "vtonlab.gmm:get_trained_ablation"})
    monkeypatch.setattr("vtonlab.gmm.get_trained_ablation", never)
    args = type("A", (), dict(model="gmm_ablation", profile="ci", ship=True, overwrite=False, reuse=False))()
    (tmp_path / "gmm_ablation_tps_rgb-ci.safetensors").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_cmd.run(args)


def test_ladi_variant_of_a_checkpoint_name():
    assert [_ladi_variant(n) for n in ("ladi_tryon", "ladi_tryon_seed2", "ladi_tryon_nogarment_seed1", "ladi_adapter_n4",
                                       "ladi_tryon_n4")] == ["full", "full", "nogarment", "n4", "n4"]
