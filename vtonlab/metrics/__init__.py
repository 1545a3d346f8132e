"""Evaluation metrics for try-on results, each result naming the extractor and weights behind it.

* Paired image metrics: :func:`ssim`, :func:`psnr` (whole image, or inside / outside the inpainting
  mask), :class:`LPIPSMetric` (official AlexNet LPIPS when its weights are local, else the clearly
  named "LPIPS-randalex").
* Distribution metrics: :class:`DistributionMetrics` / :func:`fid_kid` (FID, KID through
  torchmetrics) and :class:`CleanFIDMetrics` / :func:`cleanfid_fid_kid` (through clean-fid,
  ``mode="clean"``, as LaDI-VTON) in an embedding chosen by :func:`fid_features` (official Inception
  when local, else "randconv"), :func:`synthclip_features` (vtonlab's CLIP trained on SynthVTON), or
  any module wrapped with :func:`from_module`.
* :func:`evaluate_tryon`: the LaDI-VTON protocol (paired / unpaired; FID/KID through clean-fid).
* :mod:`vtonlab.metrics.degradations`: controlled degradations for studying metrics.
* Colour inside a region (:mod:`vtonlab.metrics.colour`): :func:`colour_error` (CIE76 Delta E of the mean
  CIELAB colour), :func:`chroma`, :func:`chroma_ratio`.
* Warp metrics (end-point error, mask IoU, warp SSIM) live in :mod:`vtonlab.metrics.warp`.
"""

from vtonlab.metrics.colour import chroma, chroma_ratio, colour_error, mean_lab
from vtonlab.metrics.distribution import CleanFIDMetrics, DistributionMetrics, cleanfid_fid_kid, fid_kid
from vtonlab.metrics.features import (
    FeatureExtractor,
    RandomConvNet,
    cleanfid_inception_features,
    fid_features,
    from_module,
    inception_features,
    random_conv_features,
    synthclip_features,
)
from vtonlab.metrics.perceptual import LPIPSMetric
from vtonlab.metrics.protocol import MismatchError, evaluate_tryon
from vtonlab.metrics.result import MetricResult, MetricTable
from vtonlab.metrics.similarity import psnr, psnr_result, ssim, ssim_map, ssim_result
from vtonlab.metrics.warp import (
    end_point_error,
    epe_map,
    epe_result,
    iou_result,
    mask_iou,
    warp_metrics,
    warp_ssim,
    warp_ssim_result,
)
from vtonlab.metrics.weights import OFFICIAL, find_official, hub_checkpoint_dir

__all__ = [
    "CleanFIDMetrics", "DistributionMetrics", "FeatureExtractor", "LPIPSMetric", "MetricResult", "MetricTable", "MismatchError",
    "OFFICIAL", "RandomConvNet", "evaluate_tryon", "fid_features", "fid_kid", "find_official", "from_module",
    "hub_checkpoint_dir", "inception_features", "psnr", "psnr_result", "random_conv_features", "ssim",
    "ssim_map", "ssim_result", "cleanfid_fid_kid", "cleanfid_inception_features", "synthclip_features",
    # warp metrics (vtonlab.metrics.warp)
    "end_point_error", "epe_map", "epe_result", "iou_result", "mask_iou", "warp_metrics", "warp_ssim",
    "warp_ssim_result",
    # colour inside a region (vtonlab.metrics.colour)
    "chroma", "chroma_ratio", "colour_error", "mean_lab",
]

