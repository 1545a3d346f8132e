"""LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501), one module per stage.

- :mod:`vtonlab.ladi.warping`: the TPS geometric matcher and the refinement UNet that warp the garment.
- :mod:`vtonlab.ladi.vae`: the KL autoencoder of the latent space.
- :mod:`vtonlab.ladi.emasc`: enhanced mask-aware skip connections from the encoder to the decoder.
- :mod:`vtonlab.ladi.inpaint`: the base 9-channel inpainting latent diffusion model (the stand-in for SD 2 inpainting).
- :mod:`vtonlab.ladi.adapter`: the inversion adapter (garment image -> pseudo-words) and the prompt encoding with them.
- :mod:`vtonlab.ladi.words`: what the pseudo-words capture (nearest vocabulary tokens, retrieval, try-on per prompt).
- :mod:`vtonlab.ladi.unet`: the 31-channel try-on UNet (``widen_conv_in``), its inputs and condition dropout.
- :mod:`vtonlab.ladi.tryon`: fine-tuning the widened UNet on the try-on task (checkpoint ``ladi_tryon``).
- :mod:`vtonlab.ladi.pipeline`: the try-on pipeline (a diffusers ``DiffusionPipeline``); ``vtonlab.ladi.load(profile)``
  returns it trained, ``vtonlab.ladi.from_official(...)`` builds it from the released weights.
- :mod:`vtonlab.ladi.ablation`: the paper's ablation switches on one test split, paired and unpaired (notebook 13).

Modules are imported on use (``from vtonlab.ladi import warping``), so importing the package loads nothing heavy.
"""


def __getattr__(name: str):
    """``load``, ``from_official`` and ``LadiVTONPipeline`` from :mod:`vtonlab.ladi.pipeline`, imported on first access."""
    if name in ("load", "from_official", "LadiVTONPipeline"):
        import importlib

        return getattr(importlib.import_module("vtonlab.ladi.pipeline"), name)
    raise AttributeError(f"module 'vtonlab.ladi' has no attribute {name!r}")
