"""Spinal cord gray matter on axial T2*-weighted MRI: find the cord, then segment its gray matter.

Two stages, as in SCT: the `spinal-cord` task (plugins/segtool_spinal_cord) finds
the cord on the whole image at 1 mm; the input is cropped to the cord plus 10 mm
in-plane; the dilated-convolution network of Perone et al. (2018) segments the gray
matter slice by slice at 0.25 mm in-plane on the crop; the mask is pasted back on
the input grid. Inputs whose field of view is already a crop (< 45 mm in-plane)
go straight to the gray-matter network.
"""

from pathlib import Path

from segtool.hookspecs import hookimpl
from segtool.spec import Locate, Postprocess, TaskSpec, WeightsFile, WeightsRef

HERE = Path(__file__).parent

SPINAL_GM = TaskSpec(
    name="spinal-gm",
    description="Spinal cord gray matter on axial T2*-weighted MRI (cervical cord).",
    modality="MRI T2* (axial)",
    channels=("t2s",),
    ndim=3,
    orientation="RAS",
    slice_axis=2,  # axial slices
    target_spacing=(0.25, 0.25, None),  # gmseg's in-plane resolution; slices kept as acquired
    patch_size=(96, 96),  # 24 mm: the cord and its surroundings
    overlap=0.25,
    batch_size=16,
    normalization="zscore",
    labels={1: "gray_matter"},
    network="dilated_gm",
    model_kwargs={"filters": 32},
    augmentation="mri-strong",
    locate=Locate(task="spinal-cord", margin_mm=(10.0, 10.0, 0.0), min_extent_mm=45.0),
    output_suffix="_gmseg",
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
