"""Try-on data: SynthVTON, the VITON-HD / Dress Code / MPV layouts, and the person representation.

- :func:`synthvton` - the course's default dataset (rendered into the cache on first use).
- :class:`VitonHDDataset`, :class:`DressCodeDataset`, :class:`MultiPoseDataset` - readers of the real
  layouts; every item is the sample dict of ``docs/architecture.md``.
- :mod:`vtonlab.data.synth` - the SynthVTON renderer; :mod:`vtonlab.data.layouts` - file formats;
  :mod:`vtonlab.data.labels` - label sets; :mod:`vtonlab.data.representation` - pose maps, masks.
- :mod:`vtonlab.data.captions` - garment captions and twin pairs, CLIP's image-text data.
- :mod:`vtonlab.data.unpaired_gt` - SynthVTON's unpaired ground truth (:func:`synthvton_unpaired`).
"""

from vtonlab.data.datasets import (
    DressCodeDataset,
    MultiPoseDataset,
    VitonHDDataset,
    sample_from_render,
    synthvton,
    synthvton_params,
    synthvton_root,
    to_sample,
    write_synthvton,
)
from vtonlab.data.layouts import LayoutError, detect_layout
from vtonlab.data.unpaired_gt import (
    MultiPoseUnpairedGroundTruthDataset,
    UnpairedGroundTruthDataset,
    ensure_unpaired_gt,
    synthvton_unpaired,
    unpaired_tryon_set,
)

__all__ = [
    "DressCodeDataset", "LayoutError", "MultiPoseDataset", "VitonHDDataset", "detect_layout", "sample_from_render",
    "synthvton", "synthvton_params", "synthvton_root", "to_sample", "write_synthvton",
    "MultiPoseUnpairedGroundTruthDataset", "UnpairedGroundTruthDataset", "ensure_unpaired_gt", "synthvton_unpaired",
    "unpaired_tryon_set",
]  # fmt: skip
