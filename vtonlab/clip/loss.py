"""CLIP's contrastive loss: the symmetric InfoNCE of Radford et al. 2021, Fig. 3, written by hand.

:func:`similarity_matrix` gives the scaled cosine similarities ``s * I T^T`` and
:func:`contrastive_loss` the mean of the image-to-text and text-to-image cross-entropies with the
matching pairs on the diagonal as targets.
"""

from __future__ import annotations

import torch


def similarity_matrix(image_features: torch.Tensor, text_features: torch.Tensor,
                      logit_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``logit_scale * I @ T^T``: ``(B_img, B_txt)`` scaled cosine similarities of normalised features."""
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"features must be (B, P) with the same P; got image {tuple(image_features.shape)}, "
                         f"text {tuple(text_features.shape)}")
    return logit_scale * image_features @ text_features.t()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al. 2021, Fig. 3), written out.

    With L2-normalised features ``I, T`` ``(B, P)`` (row ``i`` of each is a matching pair) and the
    already exponentiated scale ``s = exp(t)``, the logits are ``L = s * I T^T`` ``(B, B)`` and

        loss = 1/2 [ -1/B sum_i log softmax_j(L)_ii  -  1/B sum_j log softmax_i(L)_jj ]

    i.e. the mean of the image->text cross-entropy (rows) and the text->image cross-entropy
    (columns), each with the diagonal as the target. Returns a scalar tensor.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(f"image_features and text_features must both be (B, P); got {tuple(image_features.shape)} "
                         f"and {tuple(text_features.shape)}")
    if image_features.shape[0] < 1:
        raise ValueError("contrastive_loss needs at least one pair")
    scale = torch.as_tensor(logit_scale, dtype=image_features.dtype, device=image_features.device)
    if scale.numel() != 1 or not bool(scale.detach() > 0):
        raise ValueError(f"logit_scale must be one positive number (exp of the learnable t), got {scale.detach()}")
    for name, feats in (("image_features", image_features), ("text_features", text_features)):
        norms = feats.detach().float().norm(dim=-1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-2):
            raise ValueError(f"{name} must be L2-normalised (row norms 1); got norms in "
                             f"[{float(norms.min()):.3g}, {float(norms.max()):.3g}]; use F.normalize(x, dim=-1)")
    logits = similarity_matrix(image_features, text_features, scale.reshape(()))
    diagonal = logits.diagonal()
    image_to_text = (logits.logsumexp(dim=1) - diagonal).mean()  # each image picks its caption among B
    text_to_image = (logits.logsumexp(dim=0) - diagonal).mean()  # each caption picks its image among B
    return (image_to_text + text_to_image) / 2
