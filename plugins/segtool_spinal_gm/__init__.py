"""Spinal cord gray matter on axial T2*-weighted MRI."""

from segtool import architectures
from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec

SPINAL_GM = TaskSpec(
    name="spinal-gm",
    description="Spinal cord gray matter on axial T2*-weighted MRI (cervical cord).",
    modality="MRI T2* (axial)",
    channels=("t2s",),
    ndim=3,
    orientation="RAS",
    # In-plane resolution of typical multi-echo T2* (0.5 mm); slices stay thick, so the
    # network never downsamples along z.
    target_spacing=(0.5, 0.5, 5.0),
    patch_size=(128, 128, 8),
    overlap=0.5,
    batch_size=4,
    normalization="zscore",
    labels={1: "gray_matter"},
    model_factory=architectures.unet,
    model_kwargs={
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "features": (16, 32, 64, 128),
        "strides": ((2, 2, 1), (2, 2, 1), (2, 2, 1)),
    },
    postprocess=Postprocess(threshold=0.5),
    citation=(
        "Perone CS, Calabrese E, Cohen-Adad J. Spinal cord gray matter segmentation using deep "
        "dilated convolutions. Sci Rep 8, 5966 (2018)."
    ),
    licence="MIT",
)


@hookimpl
def segtool_register_tasks(register):
    register(SPINAL_GM)
