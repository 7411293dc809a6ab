"""``lift``: a frozen 2-D network's per-pixel outputs lifted into a feature field on the teacher's Gaussians
(Feature 3DGS, Zhou et al., CVPR 2024).

The 2-D teacher is real and imperfect: a small part segmenter the run trains on renders of the mesh from
cameras of its own, labelled with ``parts`` parts of the mesh's own geometry (k-means of its faces,
:mod:`distill.scenes.parts`), cached like any fitted teacher. The value at ``tap`` (a module path, as any
teacher is tapped; ``output`` is the part logits) on the scene's training views is lifted into ``C``
features per Gaussian of the scene teacher, whose geometry is kept, and — Feature 3DGS's speed-up — into
``C / reduce`` features decoded to ``C`` by a 1×1 convolution. At the held-out views the lifted fields
are scored against the mesh's true parts beside the 2-D network run on the mesh's own renders there:
part mIoU (the argmax of rendered logits; a tap of the head's input goes through the network's head),
the cosine of their features to the network's, and render time per view. The claim: the lifted field is
at least as good as the network on those views (multi-view fusion), and the ``C / reduce`` variant is
within a point of ``C`` at less than half the render time.
"""

from __future__ import annotations

import time

import torch
from pydantic import ValidationError

from distill.errors import ConfigError, check_count
from distill.experiment.runner import Run
from distill.scenes import orbit, render_mesh, to_view_range
from distill.scenes.parts import face_parts, part_maps
from distill.tasks.scene.context import TURNTABLE, SceneContext
from distill.tasks.scene.features import (
    FeatureField,
    FeatureLiftObjective,
    check_geometry,
    logits_reader,
    tap_features,
    teacher_features,
)
from distill.tasks.scene.methods.base import SCENE_METHODS, MethodResult, SceneMethod
from distill.tasks.scene.methods.compact import check_gaussian_teacher
from distill.tasks.scene.metrics import SceneRow, feature_cosine, mean_iou, render_seconds
from distill.tasks.scene.segmenter import SegmenterSpec, check_tap, obtain_segmenter


@SCENE_METHODS.register("lift")
class Lift(SceneMethod):
    """Feature 3DGS (Zhou et al., CVPR 2024): the outputs of a frozen 2-D part segmenter at ``tap``, on the
    training views, lifted into per-Gaussian features of the teacher's Gaussians (``C`` channels, and
    ``C / reduce`` with a 1×1 decoder); scored at held-out views beside the network itself."""

    def __init__(self, parts: int = 4, tap: str = "output", reduce: int = 4, segmenter: dict | None = None) -> None:
        if not isinstance(parts, int) or isinstance(parts, bool) or parts < 2:
            raise ConfigError(f"lift option parts must be an int >= 2 (the mesh's parts to segment), got {parts!r}.")
        self.parts = parts
        self.reduce = check_count("lift option reduce", reduce)
        if not isinstance(tap, str):
            raise ConfigError(f"lift option tap must be a module path of the 2-D teacher, e.g. 'output', got {tap!r}.")
        try:
            self.segmenter = SegmenterSpec.model_validate(segmenter or {})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ConfigError(f"lift option segmenter: {problems}.") from None
        self.tap = check_tap(self.segmenter.build(parts + 1), tap)

    def check_recipe(self, recipe) -> None:
        check_gaussian_teacher(recipe, "lift", "its Gaussians, carrying features")
        if recipe.train.batch_size > recipe.views.count:
            raise ConfigError(f"train.batch_size ({recipe.train.batch_size}) exceeds the {recipe.views.count} "
                              "training views the features are lifted from; lower it.")

    def run(self, context: SceneContext, run: Run) -> MethodResult:
        teacher, size = check_geometry(context.teacher), context.size
        parts = face_parts(context.mesh, self.parts, context.recipe.views.seed)
        network, network_info = obtain_segmenter(self.segmenter, context.mesh, parts, context.recipe.views, run)
        reader = logits_reader(network, self.tap)

        def read(images):
            return teacher_features(network, lambda net, x: tap_features(net, self.tap, x), images, size)

        targets = read(context.views.images)
        channels = targets.shape[1]
        held_images = to_view_range(context.truth)
        truth = part_maps(context.mesh, parts, context.held, size)
        held_targets, mask = read(held_images), truth > 0
        turntable = orbit(TURNTABLE, elevation=15.0, radius=context.recipe.views.radius,
                          fov_degrees=context.recipe.views.fov)
        classes = self.parts + 1

        with torch.no_grad():
            seconds = network_seconds(network, held_images, context.recipe.evaluate.render_repeats)
            mesh_turntable = to_view_range(render_mesh(context.mesh, turntable, size))
            rows = [SceneRow(f"2-D segmenter on the mesh's renders ({network_info['views']} views of its own)",
                             {"representation": "PartSegmenter", "params": sum(p.numel() for p in network.parameters()),
                              "channels": channels, "miou": mean_iou(network(held_images).argmax(1), truth, classes),
                              "render_ms": 1000 * seconds},
                             parts_image(network(mesh_turntable).argmax(1), self.parts),
                             {"seconds": network_info.get("seconds")})]

        fields = {"full": FeatureField(teacher, channels)}
        if self.reduce > 1:
            fields["reduced"] = FeatureField(teacher, max(1, channels // self.reduce), channels)
        details = {"parts": self.parts, "tap": str(self.tap), "channels": channels, "segmenter": network_info,
                   "segmentation_read": "logits" if reader is not None else None}
        for name, field in fields.items():
            objective = FeatureLiftObjective(field, context.views.cameras, targets)
            result = run.train(objective, objective.dataset(), context.recipe.train, f"lift_{name}")
            with torch.no_grad():
                rendered = field.render(context.held, size)
                metrics = {"representation": "FeatureField", "gaussians": len(teacher), "params": field.parameter_count(),
                           "channels": field.scene.channels,
                           "miou": None if reader is None else mean_iou(reader(rendered).argmax(1), truth, classes),
                           "cosine": feature_cosine(rendered, held_targets, mask),
                           "render_ms": 1000 * render_seconds(field, context.held, size,
                                                              context.recipe.evaluate.render_repeats)}
                shown = field.render(turntable, size)
                image = (parts_image(reader(shown).argmax(1), self.parts) if reader is not None
                         else (shown.norm(dim=1, keepdim=True) / shown.norm(dim=1).amax().clamp_min(1e-8)))
            label = (f"lifted field, {channels} channels" if field.decoder is None else
                     f"lifted field, {field.scene.channels} channels + 1×1 decoder to {channels}")
            rows.append(SceneRow(label, metrics, image, {"seconds": result.seconds}))
        section = claims_section(rows)
        details["claims"] = section
        return MethodResult(rows, fields["full"].scene, details, [section])


@torch.no_grad()
def network_seconds(network, images, repeats: int) -> float:
    """Seconds per view of the network on ``images`` (the best of ``repeats`` timed passes over all of them)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        network(images)
        best = min(best, time.perf_counter() - began)
    return best / len(images)


def parts_image(labels, parts: int):
    """Part labels ``(B, H, W)`` as grey images ``(B, 1, H, W)`` in [0, 1] (background black)."""
    return (labels.float() / parts)[:, None]


def claims_section(rows: list[SceneRow]) -> str:
    """Feature 3DGS's claims read off the rows: the lifted field's mIoU against the 2-D network's at the
    held-out views, and the reduced field's mIoU and render time against the full one's."""
    network, full, *reduced = (row.metrics for row in rows)
    if full["miou"] is None:
        return "## Feature-field claims\n\nThe tap is not read as part logits, so no mIoU: the fields are scored by feature cosine."
    lines = [f"The lifted field's held-out part mIoU is {full['miou']:.3f} against the 2-D network's {network['miou']:.3f} "
             f"on the mesh's own renders ({'met' if full['miou'] >= network['miou'] else 'missed'}: goal ≥)."]
    if reduced:
        small = reduced[0]
        points = 100 * (small["miou"] - full["miou"])
        ratio = small["render_ms"] / max(full["render_ms"], 1e-9)
        lines.append(f"The {small['channels']}-channel field with the 1×1 decoder is {points:+.1f} points from the "
                     f"{full['channels']}-channel one ({'met' if points >= -1 else 'missed'}: goal within 1) at {ratio:.2f}× the render time "
                     f"({'met' if ratio < 0.5 else 'missed'}: goal < 0.5×).")
    return "## Feature-field claims\n\n" + " ".join(lines)
