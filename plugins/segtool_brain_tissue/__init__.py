"""Brain tissue classes (CSF, gray matter, white matter) on T1-weighted MRI."""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec

BRAIN_TISSUE = TaskSpec(
    name="brain-tissue",
    description="CSF, gray matter and white matter on skull-stripped T1-weighted brain MRI.",
    modality="MRI T1",
    channels=("t1",),
    ndim=3,
    orientation="RAS",
    target_spacing=(1.0, 1.0, 1.0),
    patch_size=(96, 96, 96),
    overlap=0.5,
    batch_size=2,
    normalization="zscore-nonzero",
    labels={1: "csf", 2: "gray_matter", 3: "white_matter"},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128, 256)},
    postprocess=Postprocess(),
    citation=(
        "Wang L, et al. Benchmark on automatic six-month-old infant brain segmentation algorithms: "
        "the iSeg-2017 challenge. IEEE TMI 38(9):2219-2230 (2019)."
    ),
    licence="Apache-2.0",
)


@hookimpl
def segtool_register_tasks(register):
    register(BRAIN_TISSUE)
