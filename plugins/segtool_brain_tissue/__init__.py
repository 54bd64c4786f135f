"""Brain tissue classes (CSF, gray matter, white matter) on brain MRI of any contrast.

The model is contrast-agnostic, trained the SynthSeg way (Billot et al., Medical
Image Analysis 2023): on images synthesised from FreeSurfer-style label maps with
random contrast, resolution, bias field, noise and deformation
(`segtool.training.synthesis`), never on a real image. The training folder made by
``scripts/prepare_brain_tissue.py`` holds each label map twice: as the case's
"image" (the full FreeSurfer label map, which `segtool_training_sampler` reads back
as a label map and turns into a new random image at every step) and as its label
file (merged into CSF/GM/WM by `TISSUE_OF`, the seed's all-CSF convention of the default
`all-csf` model, or by the run's ``--labels-map``, e.g. ``VENTRICULAR_CSF_TISSUE_OF`` for the
`ventricular-csf` model). Real scans (the vxm T1) only validate.

Geometry (measured, see the model card): a 2D U-Net (16-256) on axial slices at
1 mm in-plane, slices kept at their own spacing, 160 x 160 training patches. The
generator cuts one-slice patches out of randomly rotated (+-15 deg on every axis, so
also oblique), scaled and deformed 3D label maps: 140-190 slices per second on one
core, four times what a training step consumes. A 2D step (16 slices) costs about
0.45 s on two cores where the earlier 3D U-Net at 2 mm (64^3, batch 2) cost 3 s on
one, and after 1,000 steps the 2D model is already past the 3D model's plateau
(mean Dice 0.42 on the vxm T1). Windows holding nothing but the image's lowest
value (the empty slices and corners of a skull-stripped scan) are background
without the network (`segtool.sliding_window`).
"""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsRef

CSF, GM, WM = 1, 2, 3

#: FreeSurfer / SynthSeg label value -> task class (SOURCE.md section 3 of the data folder).
#: Unlisted values (vessels 30/62, aseg choroid plexus 31/63, non-WM hypointensities 80,
#: SynthSeg's extra-cerebral labels 502-530: skull, scalp, eyes, soft tissue, spinal cord) are background.
TISSUE_OF: dict[int, int] = {
    # CSF: lateral, inferior-lateral, 3rd, 4th, 5th ventricles; CSF (extra-cerebral in the SynthSeg maps);
    # SynthSeg's intra-ventricular labels 136/137/163/164 (folded into the ventricles, as SynthSeg does)
    **{v: CSF for v in (4, 5, 43, 44, 14, 15, 72, 24, 136, 137, 163, 164)},
    # GM: cerebral and cerebellar cortex, thalamus, caudate, putamen, pallidum, hippocampus, amygdala,
    # accumbens, ventral DC (deep gray nuclei count as GM, as in FSL FAST, SPM, iSeg and MRBrainS)
    **{v: GM for v in (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60)},
    # WM: cerebral and cerebellar WM, brainstem (mostly tracts, WM-like on T1), WM hypointensities,
    # optic chiasm, corpus callosum, lesions (SynthSeg segments them as WM)
    **{v: WM for v in (2, 41, 7, 46, 16, 77, 85, 251, 252, 253, 254, 255, 25, 57)},
}

#: FreeSurfer's aseg convention, where CSF is the ventricular system only: the extra-cerebral and sulcal CSF
#: (SynthSeg's label 24; outside aseg's pial surface, label 0 there) is background. `segtool train
#: --labels-map` with this map (scripts/prepare_brain_tissue.py --raw-labels writes it) trains the
#: `ventricular-csf` model, comparable with FreeSurfer-labelled references.
VENTRICULAR_CSF_TISSUE_OF: dict[int, int] = {k: v for k, v in TISSUE_OF.items() if k != 24}

#: SynthSeg's extra-cerebral labels: removed (with the background) when a sample is skull-stripped.
NON_BRAIN = frozenset((502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530))
#: Extra-cerebral CSF: a brain mask keeps only a thin rim of it.
OUTER_CSF = frozenset((24,))

#: What each bundled model calls CSF. The default, `all-csf`, follows the seed's convention: all
#: cerebrospinal fluid (ventricles, sulci, extra-cerebral space), as FSL FAST, SPM and Atropos label it and
#: as SOURCE.md section 3 maps the SynthSeg label maps. `ventricular-csf` follows FreeSurfer aseg's: the
#: ventricular system only, sulcal and extra-cerebral CSF are background (for FreeSurfer users and
#: comparisons with aseg labels). The task's description (`segtool tasks brain-tissue --json`) and each
#: model's description state them.
CSF_CONVENTION: dict[str, str] = {
    "all-csf": "CSF = all CSF: ventricles, sulci and extra-cerebral space (the seed's convention, as FSL FAST, "
               "SPM, Atropos)",
    "ventricular-csf": "CSF = the ventricles only, sulcal and extra-cerebral CSF background (FreeSurfer aseg's "
                       "convention)",
}
DEFAULT_MODEL = "all-csf"

#: The bundled models, the default first. `all-csf` is the final step of an 8,000-step `segtool train` run
#: on synthetic slices; `ventricular-csf` is that model fine-tuned 2,500 steps with VENTRICULAR_CSF_TISSUE_OF.
#: Both float16, both run with left-right test-time flips, both trained on synthetic images only (their
#: model_card.md, with their scores on the real vxm T1 against both CSF references).
MODELS = {
    "all-csf": WeightsRef.bundled(
        "segtool_brain_tissue", "309272ed8972b9e8f2f40b580e1f4064c3dc5ea3cedea06432fe5ca8eff86548",
        "940e146614189b5f18f29cd9dc3c17d0628a859e5df5245edd985d121e36cf8c",
        f"{CSF_CONVENTION['all-csf']}; the default. Real vxm T1 against an all-CSF reference: CSF 0.68, GM 0.81, "
        "WM 0.87, mean 0.79 (all-csf/model_card.md)",
        folder="all-csf",
    ),
    "ventricular-csf": WeightsRef.bundled(
        "segtool_brain_tissue", "7bbf434f4afefd427e65606327aef11936a310be8efdadc26c8bf15f80c351b2",
        "5d0ba86d35b80c954e468538506d3e67fc6e826f9c6ee41194b6e84558d95ccb",
        f"{CSF_CONVENTION['ventricular-csf']}; for FreeSurfer users. Real vxm T1 against its aseg ventricles: "
        "CSF 0.81, GM 0.81, WM 0.87, mean 0.83 (ventricular-csf/model_card.md)",
        folder="ventricular-csf",
    ),
}


def _description() -> str:
    """The task's one-line description, ending with each model's CSF convention (the default's first)."""
    conventions = "; ".join(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: {CSF_CONVENTION[name]}"
                            for name in MODELS)
    return ("CSF, gray matter and white matter on brain MRI of any contrast (T1, T2, ...), skull-stripped or not; "
            f"contrast-agnostic model trained on synthetic images (SynthSeg style). CSF by model: {conventions}.")


BRAIN_TISSUE = TaskSpec(
    name="brain-tissue",
    description=_description(),
    modality="MRI (any contrast)",
    channels=("t1",),
    ndim=3,
    orientation="RAS",
    slice_axis=2,  # axial slices (RAS: the inferior-superior axis)
    target_spacing=(1.0, 1.0, None),
    patch_size=(160, 160),
    # 0.4, not 0.5: a slice up to 256 voxels wide takes 2 windows a side, not 3 (4 a slice, not 9), so a
    # 256^3 T1 fits 30 s on 2 cores (18-24 s measured, README); slices up to 240 wide (vxm T1: 160 x 224) as at 0.5
    overlap=0.4,
    batch_size=16,
    inference_batch_size=8,
    normalization="percentile",
    augmentation="none",  # the synthesis already deforms, blurs, biases and adds noise
    # the synthesis flips left-right only (SynthesisSettings.flip_axes, axis 0 of RAS, network axis 0
    # of axial slices): --tta flips that axis, never anterior-posterior (CSF Dice 0.81 -> 0.73 on vxm)
    trained_flips=(0,),
    labels={CSF: "csf", GM: "gray_matter", WM: "white_matter"},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128, 256)},
    models=MODELS,
    default_model=DEFAULT_MODEL,
    postprocess=Postprocess(),
    citation=(
        "Billot B, et al. SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without "
        "retraining. Medical Image Analysis 86:102789 (2023). "
        "Wang L, et al. Benchmark on automatic six-month-old infant brain segmentation algorithms: "
        "the iSeg-2017 challenge. IEEE TMI 38(9):2219-2230 (2019)."
    ),
    licence="Apache-2.0",
)


def synthesis_settings():
    """The generator's settings for this task (SynthSeg's ranges, in 2 mm voxels)."""
    from segtool.training.synthesis import SynthesisSettings

    return SynthesisSettings(
        strip_labels=NON_BRAIN,
        rim_labels=OUTER_CSF,
        normalization=BRAIN_TISSUE.normalization,
    )


@hookimpl
def segtool_register_tasks(register):
    register(BRAIN_TISSUE)


@hookimpl
def segtool_training_sampler(spec, cases, patch_size, batch_size, labels_map):
    """Synthetic training batches from the cases' label maps (their image files are the label maps).

    The FreeSurfer labels merge into the task's classes by the run's ``--labels-map`` when it
    has one (e.g. ``VENTRICULAR_CSF_TISSUE_OF``), else by ``TISSUE_OF``.
    """
    if spec.name != BRAIN_TISSUE.name:
        return None
    from segtool.training.synthesis import LabelSynthesizer, SynthesisSampler, label_maps_on_grid

    target_of = dict(labels_map) if labels_map else TISSUE_OF
    maps = label_maps_on_grid(spec, cases, source="image", target_of=target_of)
    settings = synthesis_settings()
    if spec.normalization != settings.normalization:
        from dataclasses import replace

        settings = replace(settings, normalization=spec.normalization)
    return SynthesisSampler(LabelSynthesizer(maps, target_of, settings), patch_size, batch_size)
