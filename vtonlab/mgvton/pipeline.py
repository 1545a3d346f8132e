"""MG-VTON end to end: a person in pose A, an in-shop garment and a target pose B -> the person in pose B wearing it.

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026, Sec. 3) is four networks trained separately; at test time each
reads what the one before produced. :class:`MGVTONPipeline` composes the trained stages of this package, with no
network of its own:

1. **conditional parsing** (:mod:`vtonlab.mgvton.parsing`): ``S = G([M_h, M_f, M_b, C, P_t])`` ``(B, 20, H, W)``
   logits; the synthesized target parsing ``S_t = argmax_c S`` (long ``(B, H, W)``);
2. **geometric matching learning** (:mod:`vtonlab.gmm`, variant ``"gml"``): the GMM's person input is
   ``[body_shape(S_t), worn_mask(S_t)]`` (CP-VTON's blurred body shape and the upper-garment mask, upper clothes +
   dress + coat, both of the SYNTHESIZED parsing, :func:`vtonlab.data.representation.body_shape` /
   :func:`~vtonlab.data.representation.worn_mask`, mapped to [-1, 1] by :func:`vtonlab.gmm.person_representation`),
   its garment input the in-shop mask; its TPS grid ``G`` warps the in-shop mask and the RGB garment
   (:func:`vtonlab.gmm.warp_garment`: ``C_w`` with border padding, so a garment on white stays white outside);
3. **Warp-GAN** (:mod:`vtonlab.mgvton.warpgan`): ``I_c = G_w([C_w, I_s, P_t, onehot(S_t)], S_s)`` with ``I_s`` the
   source person with the garment removed (the sample's ``agnostic``) and the source parsing ``S_s`` for the
   feature warp;
4. **refinement render** (:mod:`vtonlab.mgvton.refine`): ``M = G_p([C_w, I_c, P_t])``,
   ``I = M * C_w + (1 - M) * I_c``.

The call (:meth:`MGVTONPipeline.forward`)::

    out = pipe(source, cloth, cloth_mask, target_pose_map, target_keypoints=None, parsing_override=None,
               use_render=None)

with ``source`` the SOURCE person's batched sample dict (``parse``, ``body_shape``, ``agnostic``; ``head`` too for
a CP-VTON GMM), ``cloth`` ``(B, 3, H, W)`` in [-1, 1], ``cloth_mask`` ``(B, 1, H, W)``, ``target_pose_map``
``(B, 18, H, W)`` drawn in the stages' ``pose_style`` (may be None when ``target_keypoints`` ``(B, 18, 3)`` are
given: it is then drawn here). It returns (:data:`OUTPUT_KEYS`; images in [-1, 1], masks in [0, 1], all on the
pipeline's device):

| key | shape | meaning |
|---|---|---|
| ``parsing`` | long (B, H, W) | the target parsing the later stages used (predicted, or ``parsing_override``) |
| ``parsing_logits`` | (B, 20, H, W) | the parsing stage's logits (computed with an override too) |
| ``grid`` | (B, H, W, 2) | the GMM's sampling grid (``align_corners=True``) |
| ``warped_cloth`` | (B, 3, H, W) | ``C_w`` |
| ``warped_mask`` | (B, 1, H, W) | the in-shop mask warped by the same grid |
| ``coarse`` | (B, 3, H, W) | Warp-GAN's ``I_c`` |
| ``composition_mask`` | (B, 1, H, W) | ``M``; all zeros when there is no composition (see ``render``) |
| ``tryon`` | (B, 3, H, W) | the result |
| ``render`` | str | ``"mask"``, ``"direct"`` or ``"off"``, below |

``render``: ``"mask"``: ``tryon = M C_w + (1 - M) I_c``; ``"direct"``: a ``composition=False`` render ("w/o Mask"),
``tryon`` is the network's image and ``composition_mask`` is all zeros, meaning nothing (there is no mask); ``"off"``:
``use_render=False``, ``tryon = coarse``, the composition with ``M = 0``, so ``composition_mask`` is all zeros.

Ablations (notebook 08): ``use_render=False`` ("w/o Render", constructor default or per call); a refine model with
``RefineConfig.composition=False`` ("w/o Mask"); a Warp-GAN with ``feature_warping=False`` ("w/o feature warping");
any :class:`vtonlab.gmm.GMM` in place of GML ("CP-VTON GMM": its person representation is CP-VTON's, built as
:func:`gmm_person_input` says: body shape of the synthesized parsing, the SOURCE ``head``, and square pose maps of
the TARGET keypoints, so ``target_keypoints`` are required); ``parsing_override`` (ground-truth target parsing in
place of the predicted one; not in the paper).

Fidelity (paper: MG-VTON as summarised in the project's reference notes; official code: none for MG-VTON):

| point | paper | official code | vtonlab |
|---|---|---|---|
| stage order | parsing, GML, Warp-GAN, render | none | the same |
| parsing passed on | synthesized parsing | none | ``argmax`` labels; Warp-GAN reads them one-hot, as it was trained (1) |
| GML person input | body shape + garment mask of the synthesized parsing | none | ``body_shape(S_t)``, ``worn_mask(S_t)`` (2) |
| GML garment input | in-shop garment mask | none | ``cloth_mask`` |
| warped garment | the garment warped by the GML TPS | none (CP-VTON: border padding) | :func:`vtonlab.gmm.warp_garment` |
| person without garment | clothes removed | none | the source sample's ``agnostic`` |
| feature-warp parsings | reference and synthesized | none | ``source["parse"]`` and ``S_t`` |
| render | ``M C_w + (1 - M) I_c`` | none | :meth:`vtonlab.mgvton.refine.RefineGenerator.render` |
| stages' training inputs | stages trained separately | none | each stage's checkpoint, as :func:`load` finds it (3) |

1. A softmax map would also be accepted by Warp-GAN (:func:`vtonlab.mgvton.warpgan.parsing_map`), but the stage
   was trained on one-hot ground-truth parsings.
2. The target person's own body shape is unknown in a multi-pose try-on; the synthesized parsing gives its layout.
   The GML checkpoint was trained with SynthVTON's ground-truth body shape and worn mask of one person.
3. ``python -m vtonlab train mgvton-refine`` trains the render on a blurred target as its coarse input and on
   SynthVTON's true garment warp (:mod:`vtonlab.mgvton.refine`), Warp-GAN on ground-truth parsings and warps: the
   gap to the predicted inputs seen here is what the pipeline's ablations measure.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vtonlab import gmm as gmm_module
from vtonlab.data.representation import body_shape, pose_heatmaps, worn_mask
from vtonlab.mgvton.networks import shape_of
from vtonlab.mgvton.parsing import N_LABELS, POSE_CHANNELS, ParsingGenerator, _check_labels, parsing_input
from vtonlab.mgvton.refine import RefineGenerator
from vtonlab.mgvton.warpgan import WarpGANGenerator, warpgan_input
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = ["OUTPUT_KEYS", "SOURCE_KEYS", "GMM_PERSONS", "MGVTONPipeline", "gmm_person_input", "load"]

OUTPUT_KEYS = ("parsing", "parsing_logits", "grid", "warped_cloth", "warped_mask", "coarse", "composition_mask", "tryon",
               "render")
"""The keys of the pipeline's output dict (module docstring)."""
SOURCE_KEYS = {"parse": "long (B, H, W) internal labels", "body_shape": "(B, 1, H, W) in [0, 1]",
               "agnostic": "(B, 3, H, W) in [-1, 1], the person with the garment removed",
               "head": "(B, 3, H, W) in [-1, 1], CP-VTON's head image (only for a CP-VTON GMM)"}
"""The source sample's keys the pipeline reads, with their shapes."""
GMM_PERSONS = ("gml", "cpvton")
"""GMM person representations the pipeline can build in the target pose (LaDI-VTON's needs the target person's
masked image, which a multi-pose try-on does not have)."""


def _check_float(name: str, x, shape: tuple[int, ...], what: str) -> None:
    if not (isinstance(x, Tensor) and x.is_floating_point() and tuple(x.shape) == shape):
        raise ValueError(f"{name}: expected a float {shape} tensor ({what}), got {shape_of(x)} {getattr(x, 'dtype', '')}")


def _check_keypoints(kp, b: int) -> None:
    if not (isinstance(kp, Tensor) and kp.ndim == 3 and kp.shape[0] == b and kp.shape[1:] == (POSE_CHANNELS, 3)):
        raise ValueError(f"target_keypoints: expected ({b}, {POSE_CHANNELS}, 3) COCO-18 keypoints (x, y in pixels, "
                         f"confidence; {POSE_CHANNELS} per person, batch {b} like cloth), got {shape_of(kp)}")
    if not torch.isfinite(kp).all():
        raise ValueError("target_keypoints: expected finite values (missing keypoints have confidence 0)")


def gmm_person_input(kind: str, parsing: Tensor, source: Mapping[str, Tensor], target_keypoints: Tensor | None,
                     size: tuple[int, int]) -> Tensor:
    """The GMM's person input in the TARGET pose, built from the synthesized parsing: ``(B, C, H, W)``.

    ``"gml"`` (MG-VTON): :func:`vtonlab.gmm.person_representation` of ``body_shape(parsing)`` and
    ``worn_mask(parsing)`` (upper garment: upper clothes, dress, coat): 2 channels. ``"cpvton"`` (the "CP-VTON GMM"
    ablation): CP-VTON's representation of ``body_shape(parsing)``, the SOURCE person's ``head`` (the only head image
    there is; in the source pose) and the TARGET pose drawn from ``target_keypoints`` as CP-VTON's squares
    (:data:`vtonlab.gmm.POSE_STYLES`): 22 channels.

    Args:
        parsing: the target parsing, long ``(B, H, W)``.
        source: the source sample dict (``head`` read for ``"cpvton"``).
        target_keypoints: ``(B, 18, 3)``; required for ``"cpvton"``.
        size: ``(H, W)``.
    """
    batch = {"body_shape": body_shape(parsing)}
    if kind == "gml":
        batch["worn_mask"] = worn_mask(parsing)
    elif kind == "cpvton":
        if target_keypoints is None:
            raise ValueError("target_keypoints: a GMM with person='cpvton' reads CP-VTON's square pose maps of the "
                             f"target pose, drawn from the keypoints; pass target_keypoints ({parsing.shape[0]}, 18, 3)")
        batch["head"] = source["head"]
        batch["pose_map"] = pose_heatmaps(target_keypoints, size, gmm_module.POSE_STYLES["cpvton"]).to(parsing.device)
    else:
        raise ValueError(f"GMM person representation: the pipeline builds {list(GMM_PERSONS)} in the target pose, "
                         f"got {kind!r}")
    return gmm_module.person_representation(batch, kind)


class MGVTONPipeline(nn.Module):
    """MG-VTON's four trained stages in sequence, for inference only (eval mode, no gradients).

    Args:
        parsing_model: a :class:`vtonlab.mgvton.parsing.ParsingGenerator`.
        gml_model: a :class:`vtonlab.gmm.GMM`: GML (``person="gml"``) or a CP-VTON GMM (``person="cpvton"``).
        warpgan_model: a :class:`vtonlab.mgvton.warpgan.WarpGANGenerator` (with or without feature warping).
        refine_model: a :class:`vtonlab.mgvton.refine.RefineGenerator` (with or without composition).
        profile: the profile whose image size every stage and input must have (None: the active one).
        use_render: False skips the render ("w/o Render": ``tryon = coarse``); a call may override it.

    The stages stay in eval mode: ``train()`` is refused (train each stage with its own module).
    """

    def __init__(self, parsing_model: ParsingGenerator, gml_model: gmm_module.GMM, warpgan_model: WarpGANGenerator,
                 refine_model: RefineGenerator, *, profile: Profile | str | None = None, use_render: bool = True) -> None:
        super().__init__()
        expected = (("parsing_model", parsing_model, ParsingGenerator, "vtonlab.mgvton.parsing.ParsingGenerator"),
                    ("gml_model", gml_model, gmm_module.GMM, "vtonlab.gmm.GMM"),
                    ("warpgan_model", warpgan_model, WarpGANGenerator, "vtonlab.mgvton.warpgan.WarpGANGenerator"),
                    ("refine_model", refine_model, RefineGenerator, "vtonlab.mgvton.refine.RefineGenerator"))
        for name, model, cls, label in expected:
            if not isinstance(model, cls):
                raise TypeError(f"{name}: expected a {label}, got {type(model).__name__}")
        self.profile = resolve_profile(profile)
        self.image_size = tuple(int(v) for v in self.profile.image_size)
        for name, model, _, _ in expected:
            size = tuple(model.config.image_size)
            if size != self.image_size:
                raise ValueError(f"{name}: its config's image_size is {size}, but profile {self.profile.name!r} has "
                                 f"{self.image_size}; every stage must be built for the profile's size")
        if gml_model.config.person not in GMM_PERSONS:
            raise ValueError(f"gml_model: GMMConfig.person={gml_model.config.person!r}; the pipeline builds the person "
                             f"representations {list(GMM_PERSONS)} in the target pose")
        styles = {n: m.config.pose_style for n, m in (("parsing_model", parsing_model), ("warpgan_model", warpgan_model),
                                                       ("refine_model", refine_model))}
        if len(set(styles.values())) != 1:
            raise ValueError(f"pose_style: the stages read one target pose map, so they need one pose style, got {styles}")
        if not isinstance(use_render, bool):
            raise ValueError(f"use_render: expected True or False, got {use_render!r}")
        self.pose_style = next(iter(styles.values()))
        self.use_render = use_render
        self.parsing_model = parsing_model
        self.gml_model = gml_model
        self.warpgan_model = warpgan_model
        self.refine_model = refine_model
        self.checkpoints: dict = {}  # the stages' checkpoints when built by load()
        self.eval()

    def train(self, mode: bool = True) -> MGVTONPipeline:
        if mode:
            raise RuntimeError("MGVTONPipeline is for inference only; train each stage with its module "
                               "(python -m vtonlab train mgvton-parsing / gml / mgvton-warpgan / mgvton-refine)")
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------------------------------ inputs

    def check_inputs(self, source: Mapping[str, Tensor], cloth: Tensor, cloth_mask: Tensor,
                     target_pose_map: Tensor | None, target_keypoints: Tensor | None,
                     parsing_override: Tensor | None) -> dict:
        """Validate a call's inputs; returns them as float / long tensors on the pipeline's device.

        Raises ``ValueError`` (``KeyError`` for a missing source key) naming the argument and the expected shape.
        """
        h, w = self.image_size
        if not (isinstance(cloth, Tensor) and cloth.ndim == 4 and cloth.shape[1] == 3):
            raise ValueError(f"cloth: expected a batch of in-shop garments (B, 3, {h}, {w}) in [-1, 1] (a single sample: "
                             f"add the batch axis), got {shape_of(cloth)}")
        b = cloth.shape[0]
        if tuple(cloth.shape[-2:]) != (h, w):
            raise ValueError(f"cloth: expected the profile {self.profile.name!r} image size {h}x{w}, got "
                             f"{cloth.shape[-2]}x{cloth.shape[-1]} ({shape_of(cloth)})")
        _check_float("cloth", cloth, (b, 3, h, w), "the in-shop garment, RGB in [-1, 1]")
        _check_float("cloth_mask", cloth_mask, (b, 1, h, w), "the in-shop garment's mask, batch and size of cloth")
        if not isinstance(source, Mapping):
            raise ValueError(f"source: expected the source person's batched sample dict, got {type(source).__name__}")
        needed = ["parse", "body_shape", "agnostic"] + (["head"] if self.gml_model.config.person == "cpvton" else [])
        missing = [k for k in needed if k not in source]
        if missing:
            raise KeyError(f"source: the sample dict lacks {', '.join(missing)}; the pipeline reads "
                           + "; ".join(f"{k} {SOURCE_KEYS[k]}" for k in needed))
        parse = source["parse"]
        _check_labels("source['parse']", parse)
        if tuple(parse.shape) != (b, h, w):
            raise ValueError(f"source['parse']: expected ({b}, {h}, {w}) (batch of cloth, the profile's size), "
                             f"got {shape_of(parse)}")
        _check_float("source['body_shape']", source["body_shape"], (b, 1, h, w), "the source's body shape in [0, 1]")
        _check_float("source['agnostic']", source["agnostic"], (b, 3, h, w), "the source person without the garment")
        if "head" in needed:
            _check_float("source['head']", source["head"], (b, 3, h, w), "CP-VTON's head image of the source")
        if target_keypoints is not None:
            _check_keypoints(target_keypoints, b)
        if target_pose_map is None:
            if target_keypoints is None:
                raise ValueError(f"target_pose_map: expected ({b}, {POSE_CHANNELS}, {h}, {w}) COCO-18 heatmaps of the "
                                 "target pose, or target_keypoints to draw them from; got neither")
            target_pose_map = pose_heatmaps(target_keypoints, (h, w), self.pose_style)
        elif not (isinstance(target_pose_map, Tensor) and target_pose_map.ndim == 4
                  and target_pose_map.shape[1] == POSE_CHANNELS):
            raise ValueError(f"target_pose_map: expected ({b}, {POSE_CHANNELS}, {h}, {w}): one heatmap per COCO-18 keypoint "
                             f"({POSE_CHANNELS} channels, style {self.pose_style!r}), got {shape_of(target_pose_map)}")
        _check_float("target_pose_map", target_pose_map, (b, POSE_CHANNELS, h, w),
                     f"COCO-18 heatmaps of the target pose, batch of cloth, style {self.pose_style!r}")
        if parsing_override is not None:
            _check_labels("parsing_override", parsing_override, N_LABELS)
            if tuple(parsing_override.shape) != (b, h, w):
                raise ValueError(f"parsing_override: expected ({b}, {h}, {w}) target labels (batch of cloth, the "
                                 f"profile's size), got {shape_of(parsing_override)}")
        dev = self.device
        src = {k: (source[k].to(dev).long() if k == "parse" else source[k].to(dev).float()) for k in needed}
        return {"source": src, "cloth": cloth.to(dev).float(), "cloth_mask": cloth_mask.to(dev).float(),
                "target_pose_map": target_pose_map.to(dev).float(),
                "target_keypoints": None if target_keypoints is None else target_keypoints.to(dev).float(),
                "parsing_override": None if parsing_override is None else parsing_override.to(dev).long()}

    # ------------------------------------------------------------------------------------------ stages

    def warp(self, parsing: Tensor, source: Mapping[str, Tensor], cloth: Tensor, cloth_mask: Tensor,
             target_keypoints: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 2: the garment warped onto the target parsing's garment region: ``(grid, warped cloth, warped mask)``."""
        c = self.gml_model.config
        person = gmm_person_input(c.person, parsing, source, target_keypoints, self.image_size)
        garment_batch = {"cloth": cloth, "cloth_mask": cloth_mask}
        grid, _ = self.gml_model(person, gmm_module.garment_input(garment_batch, c.garment))
        warped, warped_mask = gmm_module.warp_garment(grid, garment_batch)
        return grid, warped, warped_mask

    @torch.no_grad()
    def forward(self, source: Mapping[str, Tensor], cloth: Tensor, cloth_mask: Tensor,
                target_pose_map: Tensor | None = None, *, target_keypoints: Tensor | None = None,
                parsing_override: Tensor | None = None, use_render: bool | None = None) -> dict:
        """Dress the source person in ``cloth`` in the target pose (module docstring for the keys returned).

        Args:
            source: the SOURCE person's batched sample dict: ``parse``, ``body_shape``, ``agnostic`` (and ``head``
                for a CP-VTON GMM) (:data:`SOURCE_KEYS`).
            cloth: the in-shop garment ``(B, 3, H, W)`` in [-1, 1]; ``cloth_mask``: its mask ``(B, 1, H, W)``.
            target_pose_map: the TARGET pose ``(B, 18, H, W)`` in the stages' ``pose_style``; None to draw it from
                ``target_keypoints``.
            target_keypoints: the TARGET pose ``(B, 18, 3)``, x, y in pixels, confidence (required by a CP-VTON GMM).
            parsing_override: long ``(B, H, W)`` target labels used in place of the predicted parsing.
            use_render: None = the constructor's; False = "w/o Render".
        """
        render = self.use_render if use_render is None else use_render
        if not isinstance(render, bool):
            raise ValueError(f"use_render: expected True, False or None, got {render!r}")
        x = self.check_inputs(source, cloth, cloth_mask, target_pose_map, target_keypoints, parsing_override)
        src, pose = x["source"], x["target_pose_map"]
        logits = self.parsing_model(parsing_input(src, x["cloth"], pose))
        parsing = x["parsing_override"] if x["parsing_override"] is not None else logits.argmax(1)
        grid, warped, warped_mask = self.warp(parsing, src, x["cloth"], x["cloth_mask"], x["target_keypoints"])
        coarse = self.warpgan_model(warpgan_input(warped, src["agnostic"], pose, parsing), src["parse"])
        zeros = coarse.new_zeros(coarse.shape[0], 1, *coarse.shape[-2:])
        if not render:
            tryon, mask, mode = coarse.clone(), zeros, "off"
        else:
            res = self.refine_model.render(warped, coarse, pose)
            if res["composition_mask"] is None:
                tryon, mask, mode = res["tryon"], zeros, "direct"
            else:
                tryon, mask, mode = res["tryon"], res["composition_mask"], "mask"
        return {"parsing": parsing, "parsing_logits": logits, "grid": grid, "warped_cloth": warped,
                "warped_mask": warped_mask, "coarse": coarse, "composition_mask": mask, "tryon": tryon, "render": mode}


def load(profile: Profile | str | None = None) -> MGVTONPipeline:
    """The trained MG-VTON pipeline of a profile: each stage's ``get_trained(profile)`` (loaded, or trained first).

    Stages: :func:`vtonlab.mgvton.parsing.get_trained`, :func:`vtonlab.gmm.get_trained_gml`,
    :func:`vtonlab.mgvton.warpgan.get_trained`, :func:`vtonlab.mgvton.refine.get_trained`: the checkpoints
    ``python -m vtonlab train mgvton-parsing / gml / mgvton-warpgan / mgvton-refine`` make. Their checkpoints are
    kept in the pipeline's ``checkpoints`` dict (keys ``parsing``, ``gml``, ``warpgan``, ``refine``).
    """
    from vtonlab.mgvton import parsing, refine, warpgan

    prof = resolve_profile(profile)
    parsing_model, parsing_ckpt = parsing.get_trained(prof)
    gml_model, gml_ckpt = gmm_module.get_trained_gml(prof)
    warpgan_model, warpgan_ckpt = warpgan.get_trained(prof)
    refine_model, refine_ckpt = refine.get_trained(prof)
    pipe = MGVTONPipeline(parsing_model, gml_model, warpgan_model, refine_model, profile=prof)
    pipe.checkpoints = {"parsing": parsing_ckpt, "gml": gml_ckpt, "warpgan": warpgan_ckpt, "refine": refine_ckpt}
    return pipe
