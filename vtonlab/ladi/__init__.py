"""LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501), one module per stage.

- :mod:`vtonlab.ladi.warping`: the TPS geometric matcher and the refinement UNet that warp the garment.
- :mod:`vtonlab.ladi.vae`: the KL autoencoder of the latent space.
- :mod:`vtonlab.ladi.emasc`: enhanced mask-aware skip connections from the encoder to the decoder.
- :mod:`vtonlab.ladi.adapter`: the inversion adapter (garment image -> pseudo-words) and the prompt encoding with them.
- :mod:`vtonlab.ladi.unet`: the 31-channel try-on UNet (``widen_conv_in``), its inputs and condition dropout.

Modules are imported on use (``from vtonlab.ladi import warping``), so importing the package loads nothing heavy.
"""
