"""Training our CLIP from scratch on SynthVTON garments, and loading the CLIP notebooks use.

The contrastive pre-training of Radford et al. 2021 (Sec. 2.5; the loss of Fig. 3) at course size:
:func:`train_config` is the JSON config that determines the weights, :func:`train` runs AdamW with
warm-up and cosine decay through :class:`vtonlab.train.Trainer`, :func:`get_trained` loads a
shipped or cached checkpoint or trains one (:func:`vtonlab.checkpoints.load_or_train`), and
:func:`load` returns a real pretrained CLIP from ``$VTONLAB_CLIP_PATH`` when one is given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vtonlab.clip.bpe import tokenize
from vtonlab.clip.config import CLIPSize, clip_size
from vtonlab.clip.evaluation import evaluate
from vtonlab.clip.images import preprocess
from vtonlab.clip.loss import contrastive_loss
from vtonlab.clip.model import CLIP
from vtonlab.data.captions import GarmentSet, distinguishing_captions, render_garments, render_twins
from vtonlab.data.synth import RENDERER_VERSION
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

TEST_SEED_OFFSET = 10_000_000  # held-out garments are rendered from seeds >= this; training seeds are below


@dataclass(frozen=True)
class CLIPTrainConfig:
    """Everything that determines our CLIP's weights: the model size and the training recipe.

    ``weight_decay`` 0.1, the twin pairs and their distinguishing captions are vtonlab's choices for a
    small CLIP trained on a few thousand garments, not the paper's settings. The JSON form
    (:meth:`to_dict`) is the checkpoint config (with the renderer version: the data key).
    """

    size: CLIPSize
    steps: int
    seed: int = 0
    warmup: float = 0.05
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    captions: str = "variants-v1"
    twins: bool = True
    twin_captions: str = "distinguishing"
    renderer_version: int = RENDERER_VERSION

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> CLIPTrainConfig:
        prof = resolve_profile(profile)
        return cls(**{"size": clip_size(prof), "steps": prof.steps_for("clip"), **overrides})

    def to_dict(self) -> dict:
        return {"size": self.size.to_dict(), "steps": self.steps, "seed": self.seed, "warmup": self.warmup,
                "weight_decay": self.weight_decay, "betas": list(self.betas), "eps": self.eps, "grad_clip": self.grad_clip,
                "captions": self.captions, "twins": self.twins, "twin_captions": self.twin_captions,
                "renderer_version": self.renderer_version}


def train_config(profile: Profile | str | None = None) -> dict:
    """The JSON config that fully determines our CLIP's weights for a profile (see ``load_or_train``)."""
    return CLIPTrainConfig.for_profile(profile).to_dict()


def _size_from_config(config: Mapping[str, Any]) -> CLIPSize:
    try:
        d = dict(config["size"])
        d["render_size"] = tuple(d["render_size"])
        return CLIPSize(**d)
    except (KeyError, TypeError) as err:
        raise ValueError(f"config['size'] must hold every CLIPSize field ({', '.join(f.name for f in dataclasses.fields(CLIPSize))}): "
                         f"{err}") from err


def train_split(config: Mapping[str, Any]) -> tuple[GarmentSet, GarmentSet]:
    """The training garments (seeds ``0..n_train-1``, with their twins when ``config["twins"]``) and the
    held-out garments (seeds from ``TEST_SEED_OFFSET``, no twins)."""
    size = _size_from_config(config)
    render = render_twins if config.get("twins", False) else render_garments
    train_set = render(range(size.n_train), size.render_size)
    test_set = render_garments(range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + size.n_test), size.render_size)
    return train_set, test_set


def make_batch_fn(model: CLIP, garments: GarmentSet, batch_size: int, *,
                  twin_captions: str = "any") -> Callable[[int, torch.Generator], dict]:
    """``batch_fn(step, generator)``: a random batch of garments, each with one random caption variant.

    From a twin set (:func:`render_twins`) the batch is made of whole pairs, so each garment's twin
    is among its negatives. ``twin_captions="distinguishing"`` draws each twin's caption only from
    those that name the attribute the pair differs in (:func:`distinguishing_captions`); ``"any"``
    draws from all of its captions.

    Images are preprocessed once for ``model`` (``pixels`` ``(B, 3, S, S)``); captions are tokenized
    per batch (``input_ids``, ``attention_mask`` ``(B, L)``).
    """
    if batch_size > len(garments):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(garments)} training garments")
    # pad + resize once, kept as uint8 (N, 3, S, S); mean/std are applied per batch
    size = model.image_size
    square = [((preprocess(garments.cloth[i:i + 256].permute(0, 3, 1, 2).float() / 127.5 - 1, size, (0.0,) * 3,
                           (1.0,) * 3, model.fit) * 255).round().clamp(0, 255).to(torch.uint8))
              for i in range(0, len(garments), 256)]
    pixels = torch.cat(square)
    tok = model.tokenizer
    if twin_captions not in ("any", "distinguishing"):
        raise ValueError(f"twin_captions must be 'any' or 'distinguishing', got {twin_captions!r}")
    captions_of = distinguishing_captions(garments) if twin_captions == "distinguishing" and garments.twins else garments.variants

    def batch_fn(step: int, generator: torch.Generator) -> dict:
        if garments.twins:  # whole pairs: every garment meets its twin in the batch
            pairs = torch.randperm(len(garments) // 2, generator=generator)[:batch_size // 2]
            idx = torch.stack([2 * pairs, 2 * pairs + 1], dim=1).flatten()
            if batch_size % 2:
                idx = torch.cat([idx, torch.randint(0, len(garments), (1,), generator=generator)])
        else:
            idx = torch.randperm(len(garments), generator=generator)[:batch_size]
        choice = torch.randint(0, 1 << 30, (batch_size,), generator=generator)
        captions = [captions_of[i][int(c) % len(captions_of[i])] for i, c in zip(idx.tolist(), choice)]
        ids, mask = tokenize(captions, tok, context_length=model.context_length)
        x = pixels[idx].float() / 127.5 - 1
        return {"pixels": preprocess(x, size, model.image_mean, model.image_std, model.fit), "input_ids": ids,
                "attention_mask": mask}

    return batch_fn


def clip_step(ctx, batch: Mapping[str, torch.Tensor]) -> dict:
    """One step of CLIP training: encode the batch, symmetric InfoNCE, optimise."""
    out = ctx.modules["clip"](batch["pixels"], batch["input_ids"], batch["attention_mask"], preprocessed=True)
    loss = contrastive_loss(out.image_features, out.text_features, out.logit_scale)
    ctx.optimize(loss, "clip")
    return {"loss": loss, "logit_scale": out.logit_scale.detach()}


def _param_groups(model: CLIP, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases, norms, embeddings or the temperature)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config: Mapping[str, Any], *, garments: GarmentSet | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None, progress: bool = True, profile: Profile | None = None):
    """Train our CLIP from scratch on SynthVTON garments; returns ``(model, history)``.

    AdamW (betas and eps of the CLIP paper), linear warm-up then cosine decay, gradient clipping,
    symmetric InfoNCE with the learnable, clamped temperature.
    """
    from vtonlab.train import Trainer

    size = _size_from_config(config)
    steps = int(config["steps"])
    torch.manual_seed(int(config["seed"]))
    model = CLIP.from_size(size)
    if garments is None:
        garments = train_split(config)[0]
    batch_fn = make_batch_fn(model, garments, size.batch_size, twin_captions=str(config.get("twin_captions", "any")))
    # fused: one kernel for all parameters; ~20x faster than the per-tensor loop on a CPU, where the
    # update of the 49,408-row token embedding would otherwise dominate a step
    fused = torch.cuda.is_available() or not torch.backends.mps.is_available()
    opt = torch.optim.AdamW(_param_groups(model, float(config["weight_decay"])), lr=size.lr,
                            betas=tuple(config["betas"]), eps=float(config["eps"]), fused=fused)
    warm = max(1, int(float(config["warmup"]) * steps))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    trainer = Trainer({"clip": model}, {"clip": opt}, clip_step, batch_fn, max_steps=steps,
                      schedulers={"clip": sched}, seed=int(config["seed"]), grad_clip=float(config["grad_clip"]),
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress,
                      desc="CLIP", profile=profile)
    history = trainer.fit()
    return trainer.unwrapped()["clip"].eval(), history


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False) -> tuple[CLIP, Any]:
    """Our CLIP for a profile, loaded from a shipped/cached checkpoint or trained: ``(model, checkpoint)``.

    The checkpoint's metrics hold the held-out zero-shot accuracies and retrieval recall of
    :func:`evaluate`.
    """
    from vtonlab.checkpoints import load_or_train

    prof = resolve_profile(profile)
    config = train_config(prof)

    def train_fn():
        train_set, test_set = train_split(config)
        model, history = train(config, garments=train_set, profile=prof)
        return {"clip": model}, evaluate(model, test_set), history

    ckpt = load_or_train("clip", config, train_fn, profile=prof, force_train=force_train)
    model = CLIP.from_size(_size_from_config(config))
    ckpt.load_into(model, prefix="clip")
    return model.eval(), ckpt


PRETRAINED_ENV = "VTONLAB_CLIP_PATH"


def load(profile: Profile | str | None = None, *, path: str | os.PathLike | None = None) -> tuple[CLIP, str]:
    """The CLIP every notebook should use: ``(model, description)``.

    A real pretrained CLIP when ``path`` (or ``$VTONLAB_CLIP_PATH``) names a local transformers CLIP
    directory (:meth:`CLIP.from_pretrained`), else our CLIP trained on SynthVTON for the profile
    (:func:`get_trained`). ``description`` says which, for the labels of every number it produces.
    """
    chosen = path if path is not None else os.environ.get(PRETRAINED_ENV, "").strip() or None
    if chosen is not None:
        model = CLIP.from_pretrained(chosen).eval()
        return model, f"pretrained CLIP from {chosen}"
    prof = resolve_profile(profile)
    model, _ = get_trained(prof)
    return model, f"vtonlab CLIP trained from scratch on SynthVTON garments (profile {prof.name})"
