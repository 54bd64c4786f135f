"""Lumbar intervertebral discs on sagittal T2-weighted spine MRI."""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec

DISC = TaskSpec(
    name="disc",
    description="The five lumbar intervertebral discs (L1-L2 to L5-S1) on T2-weighted spine MRI.",
    modality="MRI T2 (sagittal)",
    channels=("t2",),
    ndim=3,
    orientation="RAS",
    slice_axis=0,  # sagittal slices (RAS: the left-right axis)
    target_spacing=(None, 1.0, 1.0),
    # the data's sagittal slices are 221 x 221 mm at 1 mm: one 224 x 224 window holds the whole
    # column (sacrum to L1), the context that names the levels, and is ~3x cheaper to run than
    # 128 x 128 windows at 50 % overlap (divisible by 16: four poolings, DeepLabV3+ stride 16)
    patch_size=(224, 224),
    overlap=0.5,
    batch_size=8,
    normalization="zscore",
    # three training subjects: TorchIO's strong MRI recipe (affine, elastic, low resolution, bias
    # field, gamma, noise, blur); its only flip is anterior-posterior (axis 0 of a sagittal slice),
    # never superior-inferior, which would swap the levels
    augmentation="mri-strong",
    labels={1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"},
    regions={"disc": (1, 2, 3, 4, 5)},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128, 256)},
    # levels by position in the column (1 = L5-S1 lowest, numbers increasing toward S), so a
    # partial field of view keeps the right names; then one component per level
    postprocess=Postprocess(keep_largest=True, relabel_by_position="S"),
    citation=(
        "Menezes-Reis R, et al. Lumbar intervertebral discs T2 relaxometry and T1rho relaxometry "
        "correlation with age in asymptomatic young adults. Quant Imaging Med Surg 6(4):402-412 (2016)."
    ),
    licence="GPL-3.0 (training data)",
)


@hookimpl
def segtool_register_tasks(register):
    register(DISC)
