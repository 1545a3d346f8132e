"""MG-VTON (Dong et al., ICCV 2019, "Towards Multi-pose Guided Virtual Try-on Network"), one module per stage.

- :mod:`vtonlab.mgvton.networks` - the ResNet-like generator and pix2pixHD's multi-scale PatchGAN discriminator
  that every MG-VTON stage builds on;
- :mod:`vtonlab.mgvton.parsing` - conditional parsing: the target human parsing from the source person's hair,
  face and body shape, the in-shop garment and the target pose (``python -m vtonlab train mgvton-parsing``);
- :mod:`vtonlab.mgvton.warpgan` - Warp-GAN, the coarse stage: the source person's bottleneck features warped by an
  affine + TPS transform between the source and target parsings (``python -m vtonlab train mgvton-warpgan``);
- :mod:`vtonlab.mgvton.refine` - the refinement render: a composition mask between the warped garment and the
  coarse result (``python -m vtonlab train mgvton-refine``);
- :mod:`vtonlab.mgvton.pipeline` - the four trained stages end to end, with the ablation switches;
  ``vtonlab.mgvton.load(profile)`` returns it (imported on first use, so importing this package needs no torch);
- :mod:`vtonlab.mgvton.ablation` - the paper's ablation rows (and a ground-truth-parsing row) with three training
  seeds, paired and unpaired against SynthVTON's ground truth (``python -m vtonlab train mgvton-ablation``).

MG-VTON's geometric matching learning is :mod:`vtonlab.gmm`'s ``"gml"`` variant. MG-VTON has no official code:
each module's docstring lists, point by point, what the paper says, what pix2pixHD's official code does where
the paper is silent, and what vtonlab does.
"""


def __getattr__(name: str):
    """``load`` and ``MGVTONPipeline`` from :mod:`vtonlab.mgvton.pipeline`, imported on first access."""
    if name in ("load", "MGVTONPipeline"):
        import importlib

        return getattr(importlib.import_module("vtonlab.mgvton.pipeline"), name)
    raise AttributeError(f"module 'vtonlab.mgvton' has no attribute {name!r}")
