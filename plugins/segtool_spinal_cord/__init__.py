"""The spinal cord (gray + white matter) on axial T2*-weighted MRI, at 1 mm: the localiser of `spinal-gm`.

A small 2D U-Net on axial slices resampled to 1 mm in-plane, over the whole field
of view (the whole neck). Its mask is good enough to crop around, not a
substitute for a dedicated cord segmentation model.
"""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsRef

#: Trained with `segtool train` on four subjects of the Spinal Cord GM Challenge and the SCT
#: test subject (model_card.md); validation Dice 0.927 on a held-out fifth site.
DEFAULT_MODEL = WeightsRef.bundled(
    "segtool_spinal_cord",
    "5b404763215b452054b33dcfb2b263a84d20f00241e05eea8142e65926e3bd69",
    "e06b5b9c5b1f6f265c4fea8e85b1a1bc6e4f0d6ad463023415c6d32435a58c71",
    "2D U-Net at 1 mm, trained on 4 gm-challenge sessions + SCT t2s (see model_card.md)",
)

SPINAL_CORD = TaskSpec(
    name="spinal-cord",
    description="Spinal cord on axial T2*-weighted MRI, coarse (1 mm): localiser for spinal-gm.",
    modality="MRI T2* (axial)",
    channels=("t2s",),
    ndim=3,
    orientation="RAS",
    slice_axis=2,
    target_spacing=(1.0, 1.0, None),
    patch_size=(128, 128),
    overlap=0.25,
    batch_size=16,
    # Activations of 16 windows outweigh a large input; 4 windows per pass run as fast on CPU
    # (t2s_uncropped: 3.5 s either way).
    inference_batch_size=4,
    normalization="percentile",
    labels={1: "spinal_cord"},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128)},
    augmentation="mri-strong",
    output_suffix="_seg",
    models={"default": DEFAULT_MODEL},
    postprocess=Postprocess(threshold=0.5, keep_largest=True),
    citation=(
        "Gros C, De Leener B, Badji A, et al. Automatic segmentation of the spinal cord and intramedullary "
        "multiple sclerosis lesions with convolutional neural networks. NeuroImage 184:901-915 (2019) "
        "(the two-stage localise-then-segment design of SCT)."
    ),
    licence="MIT",
)


@hookimpl
def segtool_register_tasks(register):
    register(SPINAL_CORD)
