"""Brain tumour sub-regions (BraTS) on 3D FLAIR + T1c, and whole tumour on 2D LGG slices (pre-contrast, FLAIR, post-contrast)."""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsRef

BRATS_CITATION = (
    "Menze BH, et al. The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS). "
    "IEEE TMI 34(10):1993-2024 (2015)."
)

#: 3D U-Net trained by `segtool train --region-dice` at 1.5 mm on the 4 BraTS 2013 cases (650 steps); 4-fold
#: cross-validated Dice WT 0.760, TC 0.545, ET 0.672 (brats_unet/model_card.md)
BRATS_UNET = WeightsRef.bundled(
    "segtool_brain_tumour",
    "585669f63cc5866f1ad575cac586d560353252647953bae52df9e27050277d0b",
    "aae7059ef87bd3eac5ce0fefbb51f101b3a8b82a4299223e6db084b14bd4b050",
    "3D U-Net (16-128) at 1.5 mm, 4 BraTS cases; cross-validated Dice WT 0.76, TC 0.55, ET 0.67 "
    "(see brats_unet/model_card.md)",
    folder="brats_unet",
)

BRAIN_TUMOUR = TaskSpec(
    name="brain-tumour",
    description="Brain tumour sub-regions (BraTS labels; whole tumour, core, enhancing) on FLAIR + T1c MRI.",
    modality="MRI FLAIR + T1 post-contrast",
    channels=("flair", "t1c"),
    ndim=3,
    orientation="RAS",
    # trained and run at 1.5 mm (a 240x240x155 brain becomes 160x160x103; cross-validated Dice 0.760 /
    # 0.545 / 0.672 against 0.727 / 0.487 / 0.628 at 2 mm, same patches and steps); the probabilities go
    # back to the input's grid before the labels are chosen
    target_spacing=(1.5, 1.5, 1.5),
    patch_size=(64, 64, 64),
    overlap=0.5,
    batch_size=2,
    # per channel inside the head: the voxels unequal to the background value (0 in a raw skull-stripped
    # scan, -mean/std in one z-scored inside its brain mask, as the BraTS copies DeepMedic ships)
    normalization="zscore-foreground",
    labels={1: "necrosis", 2: "edema", 3: "non_enhancing", 4: "enhancing"},
    regions={"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4), "enhancing_tumour": (4,)},
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128)},
    models={"unet": BRATS_UNET},
    augmentation="mri-strong",  # affine, elastic, low resolution, bias field, gamma, noise, blur, L-R flips
    # the largest connected whole tumour, its sub-regions as predicted: in cross-validation the mean HD95
    # fell from 65.9 / 78.6 / 47.2 mm (WT / TC / ET) to 14.6 / 23.9 / 23.1 and Dice rose 0.006-0.009
    postprocess=Postprocess(min_size_mm3=10.0, keep_largest_union=(1, 2, 3, 4)),
    citation=BRATS_CITATION,
    licence="CC-BY-NC-SA-3.0 (training data)",
)

#: Channels of the LGG slices, in the order each 3-channel TIFF holds them (the dataset's README):
#: T1 pre-contrast, FLAIR, T1 post-contrast. Where a sequence was missing the dataset repeats FLAIR.
LGG_CHANNELS = ("pre_contrast", "flair", "post_contrast")

#: attention U-Net trained by `segtool train` on all 45 LGG patients (11 min, 2 CPU cores), with the channel
#: stand-ins: its recipe's five folds by patient give a mean per-patient Dice of 0.698, median 0.808 (model card).
LGG_ATTENTION_UNET = WeightsRef.bundled(
    "segtool_brain_tumour",
    "f2290603f867c51022e31abe8ef297fe9ec35f8d75e23ed626dd1f66da172503",
    "32721a8f2017d1ce9752be24640388f41a9e8fe6078073afacfcb3167509b43c",
    "attention U-Net (16-256), slices resized to 128x128, trained on all 45 patients; its recipe's 5-fold "
    "per-patient Dice: mean 0.698, median 0.808 (see lgg_attention_unet/model_card.md)",
    folder="lgg_attention_unet",
)

BRAIN_TUMOUR_2D = TaskSpec(
    name="brain-tumour-2d",
    description="Whole brain tumour (FLAIR abnormality) on 2D axial slices of pre-contrast, FLAIR and "
                "post-contrast MRI (LGG); --stack segments a patient's slices as one volume.",
    modality="MRI pre-contrast + FLAIR + post-contrast (2D axial slice; one 3-channel TIFF or one file per channel)",
    channels=LGG_CHANNELS,
    ndim=2,
    orientation=None,
    target_spacing=None,
    # each 256x256 slice is resized to 128x128 for the network (one window a slice; resizing the
    # masks of all 45 patients to 128 and back costs 0.008 Dice); probabilities go back to the
    # slice's size before the threshold and the largest-component step
    input_size=(128, 128),
    patch_size=(128, 128),
    overlap=0.25,
    batch_size=16,
    normalization="zscore-nonzero",  # per channel, inside the head (the slices' background is 0)
    labels={1: "tumour"},
    network="attention_unet",
    model_kwargs={"features": (16, 32, 64, 128, 256)},
    models={"attention_unet": LGG_ATTENTION_UNET},
    augmentation="photo",  # torch flips, rotation, scaling, brightness/contrast, noise, blur on 2D slices
    # the collection repeats FLAIR where a T1 was not acquired (HT_7877: FLAIR three times, scored 0
    # by every fold model trained without seeing that); training shows such slices
    channel_stand_ins={"pre_contrast": "flair", "post_contrast": "flair"},
    # the largest tumour component: in 3D with --stack (a patient's slices, as Buda et al. measure),
    # else per slice; on the validation patients it raised the mean per-patient Dice by ~0.035
    postprocess=Postprocess(threshold=0.5, keep_largest=True),
    citation=(
        "Buda M, Saha A, Mazurowski MA. Association of genomic subtypes of lower-grade gliomas with "
        "shape features automatically extracted by a deep learning algorithm. Comput Biol Med 109 (2019)."
    ),
    licence="research use with attribution (TCGA-LGG via TCIA)",
)


@hookimpl
def segtool_register_tasks(register):
    register(BRAIN_TUMOUR)
    register(BRAIN_TUMOUR_2D)
