"""Spinal cord gray matter on axial T2*-weighted MRI: find the cord, then segment its gray matter.

Two stages, as in SCT: the `spinal-cord` task (plugins/segtool_spinal_cord) finds the
cord at 1 mm; the input is cropped to the cord plus 10 mm in-plane; two 2D U-Nets,
distilled from the published gmseg model, segment the gray matter slice by slice at
0.25 mm in-plane on the crop, their probabilities averaged (the seed's dilated-convolution
network of Perone et al. (2018), trained by us on the manual masks, measured below them on
every held-out case and stays selectable: ``--model dilated_gm``); the
mask is pasted back on the input grid, keeping only gray matter within 2 mm of the
located cord (gray matter lies inside the cord).
Images that are already a crop go the same way (the localiser finds the cord in
them too); if it finds no cord, the whole image is segmented, with a warning.
"""

from segtool.hookspecs import hookimpl
from segtool.spec import Locate, Postprocess, TaskSpec, WeightsRef

#: Two 2D U-Nets trained by `segtool train` on four subjects (five sessions) of the Spinal Cord GM
#: Challenge and the SCT test subject, distilled from the published gmseg `large` model (its masks of
#: the training images and of augmented copies of them, scripts/distill_gmseg.py), averaged;
#: 9604 and the MT image held out (model_card.md has the per-case table).
DEFAULT_MODEL = WeightsRef.bundled(
    "segtool_spinal_gm",
    "847cd6658f361f03d3d60417b989e14ba9a1a13ff9b8b501e693cff17270a83b",
    "4f1f639b78d2dfe252be949d84b279d26086e517c8e390bc1204d83776660f3d",
    "ensemble of two 2D U-Nets (16-128) at 0.25 mm distilled from the published gmseg 'large' model, "
    "trained by segtool; held out: t2s 0.895, mt1 0.740, 9604 0.905 (see model_card.md)",
)

#: The seed's network, trained the same way on the same cases (the default until 2026-12-05):
#: held out t2s 0.869, mt1 0.646, 9604 0.883 at its calibrated threshold 0.75.
DILATED_GM_MODEL = WeightsRef.bundled(
    "segtool_spinal_gm",
    "962671cc747c4b2e61e2c0ab7a5cc3e9266c9738c89494ab33491573c01ca9d4",
    "b263cf5682f7e79dcbd0ec2d229ff965d7cf450ed685292e42cd95603a96d73d",
    "dilated_gm (Perone et al. 2018) at 0.25 mm, 127k parameters, trained by segtool; held out: t2s 0.869, "
    "mt1 0.646, 9604 0.883 (see dilated_gm/model_card.md)",
    folder="dilated_gm",
)

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
    # dilated_gm's activations for 16 windows (~0.4 GB at 96x96) outweigh a large input; 4 windows
    # per pass run as fast on CPU (t2s_uncropped: 5.3 s either way).
    inference_batch_size=4,
    normalization="zscore",
    labels={1: "gray_matter"},
    # what `segtool train spinal-gm` trains: the default model's recipe (model_card.md)
    network="unet",
    model_kwargs={"features": (16, 32, 64, 128)},
    augmentation="mri-strong",
    # Gray matter lies inside the cord: labels farther than 2 mm from the located cord are dropped.
    locate=Locate(task="spinal-cord", margin_mm=(10.0, 10.0, 0.0), min_extent_mm=0.0, within_mm=2.0),
    output_suffix="_gmseg",
    models={"default": DEFAULT_MODEL, "dilated_gm": DILATED_GM_MODEL},
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
