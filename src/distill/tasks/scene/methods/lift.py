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
        scoring = Scoring(network, logits_reader(network, self.tap), self.tap, self.parts,
                          part_maps(context.mesh, parts, context.held, size), context)
        targets = scoring.read(context.views.images)
        channels = targets.shape[1]
        rows = [scoring.network_row(f"2-D segmenter on the mesh's renders ({network_info['views']} views of its own)",
                                    to_view_range(context.truth), None, {"seconds": network_info.get("seconds")}),
                scoring.network_row("2-D segmenter on the teacher's renders", to_view_range(context.teacher_truth),
                                    context.teacher)]
        fields = {"full": FeatureField(teacher, channels)}
        if self.reduce > 1:
            fields["reduced"] = FeatureField(teacher, max(1, channels // self.reduce), channels)
        for name, field in fields.items():
            objective = FeatureLiftObjective(field, context.views.cameras, targets)
            result = run.train(objective, objective.dataset(), context.recipe.train, f"lift_{name}")
            label = (f"lifted field, {channels} channels" if field.decoder is None else
                     f"lifted field, {field.scene.channels} channels + 1×1 decoder to {channels}")
            rows.append(scoring.field_row(label, field, len(teacher), {"seconds": result.seconds}))
        section = claims_section(rows)
        details = {"parts": self.parts, "tap": str(self.tap), "channels": channels, "segmenter": network_info,
                   "claims": section}
        return MethodResult(rows, fields["full"].scene, details, [section])


class Scoring:
    """How a lift run's rows are scored at the held-out views: part mIoU against the ``truth`` part maps,
    the cosine to the network's features there (on the mesh's renders), and seconds per view; with a
    turntable of part labels."""

    def __init__(self, network, reader, tap, parts: int, truth, context: SceneContext) -> None:
        self.network, self.reader, self.tap, self.parts, self.truth = network, reader, tap, parts, truth
        self.context, self.size = context, context.size
        self.repeats = context.recipe.evaluate.render_repeats
        self.turntable = orbit(TURNTABLE, elevation=15.0, radius=context.recipe.views.radius,
                               fov_degrees=context.recipe.views.fov)
        self.held_targets = self.read(to_view_range(context.truth))

    def read(self, images):
        """The network's features at the tap on ``images``, at the run's size."""
        return teacher_features(self.network, lambda net, x: tap_features(net, self.tap, x), images, self.size)

    def miou(self, logits) -> float:
        return mean_iou(logits.argmax(1), self.truth, self.parts + 1)

    @torch.no_grad()
    def network_row(self, label: str, images, scene, cost: dict | None = None) -> SceneRow:
        """The network's own parts on ``images`` of the held-out views (renders of the mesh, or of ``scene``,
        whose render time then counts in the time per view)."""
        seconds = network_seconds(self.network, images, self.repeats)
        if scene is not None:
            seconds += render_seconds(scene, self.context.held, self.size, self.repeats)
            shown = to_view_range(scene.render(self.turntable, self.size).clamp(0, 1))
        else:
            shown = to_view_range(render_mesh(self.context.mesh, self.turntable, self.size))
        metrics = {"representation": "PartSegmenter", "params": sum(p.numel() for p in self.network.parameters()),
                   "channels": self.held_targets.shape[1], "miou": self.miou(self.network(images)),
                   "render_ms": 1000 * seconds}
        if scene is not None:
            metrics["cosine"] = feature_cosine(self.read(images), self.held_targets, self.truth > 0)
        return SceneRow(label, metrics, parts_image(self.network(shown).argmax(1), self.parts), cost or {})

    @torch.no_grad()
    def field_row(self, label: str, field: FeatureField, gaussians: int, cost: dict) -> SceneRow:
        """A lifted field rendered at the held-out views: its parts (the argmax of its rendered logits) and
        features against the network's on the mesh's renders, and its render time."""
        rendered = field.render(self.context.held, self.size)
        metrics = {"representation": "FeatureField", "gaussians": gaussians, "params": field.parameter_count(),
                   "channels": field.scene.channels,
                   "miou": None if self.reader is None else self.miou(self.reader(rendered)),
                   "cosine": feature_cosine(rendered, self.held_targets, self.truth > 0),
                   "render_ms": 1000 * render_seconds(field, self.context.held, self.size, self.repeats)}
        shown = field.render(self.turntable, self.size)
        image = (parts_image(self.reader(shown).argmax(1), self.parts) if self.reader is not None
                 else shown.norm(dim=1, keepdim=True) / shown.norm(dim=1).amax().clamp_min(1e-8))
        return SceneRow(label, metrics, image, cost)


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
    """Feature 3DGS's claims read off the rows: the lifted field's mIoU and time per view against the 2-D
    network's at the held-out views (on the mesh's renders, and on the teacher's), and the reduced field's
    mIoU and render time against the full one's."""
    mesh, rendered, full, *reduced = (row.metrics for row in rows)
    if full["miou"] is None:
        return "## Feature-field claims\n\nThe tap is not read as part logits, so no mIoU: the fields are scored by feature cosine."
    lines = [f"The lifted field's held-out part mIoU is {full['miou']:.3f}; the 2-D network's is {mesh['miou']:.3f} on the "
             f"mesh's own renders ({'met' if full['miou'] >= mesh['miou'] else 'missed'}: goal ≥) and "
             f"{rendered['miou']:.3f} on the teacher's renders ({'met' if full['miou'] >= rendered['miou'] else 'missed'}). "
             f"Per view it renders in {full['render_ms']:.1f} ms against {rendered['render_ms']:.1f} ms for the teacher's "
             "render and the network."]
    if reduced:
        small = reduced[0]
        points = 100 * (small["miou"] - full["miou"])
        ratio = small["render_ms"] / max(full["render_ms"], 1e-9)
        lines.append(f"The {small['channels']}-channel field with the 1×1 decoder is {points:+.1f} points from the "
                     f"{full['channels']}-channel one ({'met' if points >= -1 else 'missed'}: goal within 1) at {ratio:.2f}× "
                     f"the render time ({'met' if ratio < 0.5 else 'missed'}: goal < 0.5×).")
    return "## Feature-field claims\n\n" + " ".join(lines)
