"""Finding official pretrained weights on disk, never on the network.

LPIPS, the VGG perceptual loss and FID/KID were defined with ImageNet-trained networks. vtonlab
uses those networks only when their weight files are already in the local torch cache, exactly
where torchvision and torch-fidelity would have downloaded them::

    <torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth                 (LPIPS trunk)
    <torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth                       (perceptual loss)
    <torch.hub.get_dir()>/checkpoints/weights-inception-2015-12-05-6726825d.pth (FID / KID, torchmetrics)
    <torch.hub.get_dir()>/checkpoints/inception-2015-12-05.pt                  (FID / KID, clean-fid)

(``torch.hub.get_dir()`` is ``$TORCH_HOME/hub``, by default ``~/.cache/torch/hub``.) The presence
of the file is checked first and the ``.pth`` files are read with ``torch.load(weights_only=True)``
by our own code, so no library ever gets the chance to start a download or to unpickle objects.

The last file is the TorchScript Inception that clean-fid (and StyleGAN2-ADA) use; clean-fid
itself keeps it at ``/tmp/inception-2015-12-05.pt`` and downloads it there when it is missing.
vtonlab looks for it only in the torch cache above and hands that folder to clean-fid with
downloading switched off. A TorchScript file holds a serialised program, not only tensors: it is
loaded with ``torch.jit.load`` (TorchScript code, no Python pickle), so place only the file you
downloaded from the official address there.

The 8 hex digits in the ``.pth`` file names are the start of the official file's sha256; a file
whose hash does not match is still used (that is how the tests place stand-in weights) but is
labelled "unverified" in every result it produces. The clean-fid file has no published hash: its
label prints the first 8 hex digits of its sha256 so that two results can be checked to come from
the same file.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class OfficialWeights:
    """Where an official weight file lives in the torch cache and what it is."""

    key: str
    filename: str
    description: str
    url_hint: str  # where a user with internet access gets it (never fetched by vtonlab)

    @property
    def sha256_prefix(self) -> str:
        """The start of the official sha256 written in the file name ("" when the name carries none)."""
        m = re.search(r"-([0-9a-f]{8,})\.", self.filename)
        return "" if m is None else m.group(1)


OFFICIAL: dict[str, OfficialWeights] = {
    "alexnet": OfficialWeights(
        "alexnet", "alexnet-owt-7be5be79.pth", "ImageNet AlexNet (torchvision IMAGENET1K_V1)",
        "torchvision.models.alexnet(weights='IMAGENET1K_V1') downloads it"),
    "vgg19": OfficialWeights(
        "vgg19", "vgg19-dcbb9e9d.pth", "ImageNet VGG19 (torchvision IMAGENET1K_V1)",
        "torchvision.models.vgg19(weights='IMAGENET1K_V1') downloads it"),
    "inception": OfficialWeights(
        "inception", "weights-inception-2015-12-05-6726825d.pth",
        "FID Inception-v3 (TensorFlow 2015-12-05 weights as converted by torch-fidelity)",
        "torchmetrics FrechetInceptionDistance() with torch-fidelity installed downloads it"),
    "inception-cleanfid": OfficialWeights(
        "inception-cleanfid", "inception-2015-12-05.pt",
        "FID Inception-v3 (TensorFlow 2015-12-05 weights as the TorchScript file of clean-fid and StyleGAN2-ADA)",
        "clean-fid's fid.compute_fid(..., mode='clean') downloads it into the system's temporary folder"),
}


def display_path(path: str | os.PathLike) -> str:
    """``path`` as printed in results and notes: ``$TORCH_HOME/...`` or ``~/...`` instead of this
    machine's absolute prefix when it lies there, so saved tables and notebooks name no machine."""
    p = Path(path)
    torch_home = os.environ.get("TORCH_HOME", "").strip()
    for prefix, name in ((torch_home, "$TORCH_HOME"), (str(Path.home()), "~")):
        if prefix:
            try:
                return str(Path(name) / p.relative_to(prefix))
            except ValueError:
                pass
    return str(p)


def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision and torch-fidelity cache weights.

    Read at call time, so ``$TORCH_HOME`` set after import is honoured.
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class LocalWeights:
    """An official weight file found on disk.

    ``verified`` is True when its sha256 starts with the prefix in the official file name.
    """

    spec: OfficialWeights
    path: Path
    sha256: str

    @property
    def checkable(self) -> bool:
        """True when the official file name carries a sha256 prefix to check against."""
        return bool(self.spec.sha256_prefix)

    @property
    def verified(self) -> bool:
        return self.checkable and self.sha256.startswith(self.spec.sha256_prefix)

    @property
    def official(self) -> bool:
        """Verified, or (no published hash) taken on trust from its name and place."""
        return self.verified or not self.checkable

    @property
    def label(self) -> str:
        """The weights name printed next to every number these weights produce."""
        if self.verified:
            return f"{self.spec.description}, {self.path.name}"
        if not self.checkable:
            return (f"{self.spec.description}, {self.path.name} (sha256 {self.sha256[:8]}; "
                    "no published hash to check it against)")
        return (f"unverified local file {display_path(self.path)} (sha256 {self.sha256[:8]}, official "
                f"{self.spec.sha256_prefix}): not the official {self.spec.description}")


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def find_official(key: str) -> LocalWeights | None:
    """The local copy of official weights ``key`` (a key of :data:`OFFICIAL`), or None.

    Only checks the file system; never downloads.
    """
    if key not in OFFICIAL:
        raise ValueError(f"unknown official weights {key!r}; known: {', '.join(OFFICIAL)}")
    spec = OFFICIAL[key]
    path = hub_checkpoint_dir() / spec.filename
    if not path.is_file():
        return None
    return LocalWeights(spec, path, _sha256(path))


def missing_message(key: str) -> str:
    """Why official weights ``key`` are not used and how a user would provide them."""
    spec = OFFICIAL[key]
    return (f"{spec.description} not found at {display_path(hub_checkpoint_dir() / spec.filename)} "
            f"({spec.url_hint}; copy the file there on an offline machine)")


def load_state_dict(path: str | os.PathLike, *, what: str = "weights") -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state dict with ``torch.load(weights_only=True)`` (tensors only, no pickled code).

    Raises ``ValueError`` naming the file when it is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or holds more than tensors
        raise ValueError(f"{what}: {path} is not a readable tensor state dict "
                         f"(torch.load with weights_only=True failed: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: {path} does not hold a dict of tensors (a state dict)")
    return state


def take_prefixed(state: dict[str, torch.Tensor], prefix: str, keys: list[str], *, path: Path,
                  what: str) -> dict[str, torch.Tensor]:
    """``{k: state[prefix + k] for k in keys}``, with an error naming the file and missing keys."""
    missing = [prefix + k for k in keys if prefix + k not in state]
    if missing:
        shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
        raise ValueError(f"{what}: {path} lacks {len(missing)} expected keys ({shown}); "
                         f"expected a torchvision state dict with keys like {prefix}{keys[0]}")
    return {k: state[prefix + k] for k in keys}
