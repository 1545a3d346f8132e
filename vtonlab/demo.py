"""A tiny model for notebook 00: it shows the training loop, not a paper.

The task is a denoising objective at ONE noise level: given a garment texture with Gaussian noise
added, predict the noise, ``L = ||eps - eps_theta(x + sigma * eps)||^2`` at a fixed sigma. Diffusion
models (DDPM, Ho et al. 2020; LaDI-VTON, in the coming notebooks) train the same epsilon-prediction
over all noise levels of a schedule, with the level given to the network; this demo does not.
Textures are random stripe patterns drawn on the fly, so no dataset is needed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile


def stripes(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random two-colour stripe textures, (B, 3, size, size) in [-1, 1]."""
    g = generator
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    angle = torch.rand(batch, 1, 1, generator=g) * math.pi
    freq = 2 + torch.rand(batch, 1, 1, generator=g) * 6
    phase = torch.rand(batch, 1, 1, generator=g) * 2 * math.pi
    t = torch.cos(angle) * x + torch.sin(angle) * y
    band = (torch.sin(t * freq * math.pi + phase) > 0).float()  # (B, H, W)
    c1 = torch.rand(batch, 3, 1, 1, generator=g) * 2 - 1
    c2 = torch.rand(batch, 3, 1, 1, generator=g) * 2 - 1
    return c1 + (c2 - c1) * band[:, None]


class TinyDenoiser(nn.Module):
    """Three 3x3 convolutions: predicts the noise in a noisy texture."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_batch_fn(batch: int, size: int, sigma: float):
    def batch_fn(step: int, generator: torch.Generator) -> dict:
        clean = stripes(batch, size, generator)
        noise = torch.randn(clean.shape, generator=generator)
        return {"noisy": clean + sigma * noise, "noise": noise, "clean": clean}

    return batch_fn


def denoise_step(ctx, batch) -> dict:
    """One optimisation step of the epsilon-prediction loss."""
    pred = ctx.modules["denoiser"](batch["noisy"])
    loss = torch.mean((pred - batch["noise"]) ** 2)
    ctx.optimize(loss, "denoiser")
    return {"loss": loss}


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines the demo denoiser's weights (its JSON form is the checkpoint config)."""

    steps: int
    width: int = 32
    size: int = 32
    sigma: float = 0.5
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> DemoConfig:
        return cls(**{"steps": resolve_profile(profile).steps_for("demo"), **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_for(profile: Profile | str | None = None) -> dict:
    """The demo's config for a profile, as the JSON dict ``train`` and ``load_or_train`` use."""
    return DemoConfig.for_profile(profile).to_dict()


def train(config: dict, *, checkpoint_dir=None, checkpoint_every=None, progress: bool = True, profile=None):
    """Train the denoiser; returns (model, history)."""
    from vtonlab.train import Trainer

    torch.manual_seed(config["seed"])
    model = TinyDenoiser(config["width"])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    trainer = Trainer({"denoiser": model}, {"denoiser": opt}, denoise_step,
                      make_batch_fn(config["batch"], config["size"], config["sigma"]),
                      max_steps=config["steps"], seed=config["seed"], checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every, progress=progress, desc="denoiser", profile=profile)
    history = trainer.fit()
    return model, history


@torch.no_grad()
def evaluate(model: nn.Module, config: dict, n: int = 64, seed: int = 12345) -> dict:
    """Noise-prediction MSE on fresh textures, against predicting zero noise (MSE = 1)."""
    g = torch.Generator().manual_seed(seed)
    batch = make_batch_fn(n, config["size"], config["sigma"])(0, g)
    model.eval()
    mse = torch.mean((model(batch["noisy"]) - batch["noise"]) ** 2).item()
    return {"test_mse": mse, "zero_baseline_mse": torch.mean(batch["noise"] ** 2).item()}


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False):
    """The demo denoiser for a profile (loaded or trained): returns (model, checkpoint)."""
    from vtonlab.checkpoints import load_or_train

    prof = resolve_profile(profile)
    config = config_for(prof)

    def train_fn():
        model, history = train(config, profile=prof)
        return {"denoiser": model}, evaluate(model, config), history

    ckpt = load_or_train("demo", config, train_fn, profile=prof, force_train=force_train)
    model = TinyDenoiser(config["width"])
    ckpt.load_into(model, prefix="denoiser")
    return model.eval(), ckpt
