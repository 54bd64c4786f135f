"""Lumbar intervertebral discs on sagittal T2-weighted spine MRI.

The seed's three 2D networks, each trained by `segtool train` on sagittal slices of two
subjects (ivd_11, ivd_20) and validated on the third (ivd_25), are bundled side by side:
`segtool run disc SERIES/` uses the best (the U-Net), `--model res_se_unet` or
`--model deeplabv3plus` another. Each folder's model_card.md has the per-subject and
leave-one-subject-out tables.
"""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsRef


#: One bundled model per seed network. The default U-Net is its recipe trained on all three subjects (its
#: leave-one-subject-out figure is the estimate); the two others hold ivd_25 out (Dice in their descriptions).
MODELS = {
    "unet": WeightsRef.bundled(
        "segtool_disc", "e84e37846341b3f7afa93a522e160dbdc6528de07b12f06c9c10197c538190fc",
        "6a86d4351bc97c8b93d07fabccf360c64132514e8390bfefade090e1c32d79b0",
        "U-Net (16-256), 1 mm sagittal slices, trained with partial fields of view on all three subjects; "
        "leave-one-subject-out Dice of the recipe 0.891 (see unet/model_card.md)",
        folder="unet",
    ),
    "res_se_unet": WeightsRef.bundled(
        "segtool_disc", "7395b741e6117e43c4fa029bebae3c51feced27773c9a6001847bfce8fcf3d01",
        "e51c2b5cf239824891df772aecd5911cb27f1ac2c5274e756f2f9fbd72f57ec5",
        "residual U-Net with squeeze-and-excitation; held-out subject Dice 0.883, leave-one-subject-out 0.873 "
        "(see res_se_unet/model_card.md)",
        folder="res_se_unet",
    ),
    "deeplabv3plus": WeightsRef.bundled(
        "segtool_disc", "a4586e7458f33af67825e5c6d029cecd0e983c6dac396c1ebebc777abd0bc81c",
        "8b6bdec2620ffd6937f7194cb0317c3e3acfa78b3378f2983fc83e45c4e472fe",
        "DeepLabV3+; held-out subject Dice 0.866 (see deeplabv3plus/model_card.md)",
        folder="deeplabv3plus",
    ),
}

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
    # Activations of 8 windows of 224x224 (~0.3 GB) outweigh a large input; 4 per pass cost little speed.
    inference_batch_size=4,
    normalization="zscore",
    # three training subjects: TorchIO's strong MRI recipe (affine, elastic, low resolution, bias
    # field, gamma, noise, blur); its only flip is anterior-posterior (axis 0 of a sagittal slice),
    # never superior-inferior, which would swap the levels
    augmentation="mri-strong",
    labels={1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"},
    regions={"disc": (1, 2, 3, 4, 5)},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128, 256)},
    models=MODELS,
    default_model="unet",
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
