"""Clothing parsing of RGB street-fashion photos: the seed's 14 classes, merged from CCP's 59 tags.

``CLASSES`` is the one table of the task (issue 12): output value, class name, colour and
the Clothing Co-Parsing (CCP) tags merged into it. The task's labels, its default
training labels map (CCP tag value -> class value, applied by ``segtool train`` when no
``--labels-map`` is given), its mask palette, overlay and QC colours all come from it.

CCP tag values are indices into CCP's ``label_list.mat`` (0-based, ``CCP_TAGS``); the
map is built from the tag *names*, so a name always wins over a mistyped index.
"""

from __future__ import annotations

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsRef

#: CCP's label_list.mat, in order: pixel value v of an annotation is CCP_TAGS[v].
CCP_TAGS: tuple[str, ...] = (
    "null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra", "bracelet",
    "cape", "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses", "gloves", "hair",
    "hat", "heels", "hoodie", "intimate", "jacket", "jeans", "jumper", "leggings", "loafers", "necklace",
    "panties", "pants", "pumps", "purse", "ring", "romper", "sandals", "scarf", "shirt", "shoes",
    "shorts", "skin", "skirt", "sneakers", "socks", "stockings", "suit", "sunglasses", "sweater", "sweatshirt",
    "swimwear", "t-shirt", "tie", "tights", "top", "vest", "wallet", "watch", "wedges",
)

#: (value, class, RGB colour, CCP tags as (index in label_list.mat, name)), exactly the issue's table.
CLASSES: tuple[tuple[int, str, tuple[int, int, int], tuple[tuple[int, str], ...]], ...] = (
    (0, "background", (0, 0, 0), ((0, "null"),)),
    (1, "hair", (128, 64, 0), ((19, "hair"),)),
    (2, "skin", (255, 200, 150), ((41, "skin"),)),
    (3, "accessories", (255, 225, 25), (
        (1, "accessories"), (2, "bag"), (3, "belt"), (9, "bracelet"), (15, "earrings"), (17, "glasses"),
        (18, "gloves"), (29, "necklace"), (33, "purse"), (34, "ring"), (47, "sunglasses"), (56, "wallet"),
        (57, "watch"))),
    (4, "hat", (240, 50, 230), ((20, "hat"),)),
    (5, "coat", (0, 130, 200), (
        (4, "blazer"), (10, "cape"), (11, "cardigan"), (13, "coat"), (22, "hoodie"), (24, "jacket"),
        (26, "jumper"), (46, "suit"), (48, "sweater"), (49, "sweatshirt"), (55, "vest"))),
    (6, "shirt", (60, 180, 75), ((5, "blouse"), (6, "bodysuit"), (38, "shirt"), (51, "t-shirt"), (54, "top"))),
    (7, "trousers", (0, 0, 128), ((25, "jeans"), (27, "leggings"), (31, "pants"), (40, "shorts"))),
    (8, "dress", (230, 25, 75), ((14, "dress"), (35, "romper"))),
    (9, "skirt", (245, 130, 48), ((42, "skirt"),)),
    (10, "underwear", (250, 190, 212), ((8, "bra"), (23, "intimate"), (30, "panties"), (50, "swimwear"))),
    (11, "socks", (70, 240, 240), ((44, "socks"), (45, "stockings"), (53, "tights"))),
    (12, "scarf/tie", (145, 30, 180), ((37, "scarf"), (52, "tie"))),
    (13, "shoes", (170, 255, 195), (
        (7, "boots"), (12, "clogs"), (16, "flats"), (21, "heels"), (28, "loafers"), (32, "pumps"),
        (36, "sandals"), (39, "shoes"), (43, "sneakers"), (58, "wedges"))),
)


def ccp_labels_map() -> dict[int, int]:
    """CCP tag value -> class value, from the tag names (every one of the 59 tags is mapped)."""
    return {CCP_TAGS.index(name): value for value, _, _, tags in CLASSES for _, name in tags}


#: The default: deeplabv3plus, a plain U-Net and a res_se_unet as one model, their mean class probability,
#: run with left-right flips and logit offsets (tau 0.1), both asked for by its config.json
#: (ensemble/model_card.md): 0.552 / 0.502 on the held-out photos (0.538 / 0.493 without either).
ENSEMBLE_MODEL = WeightsRef.bundled(
    "segtool_clothing",
    "19144ead31383dd7f2f6105c2db7ca44c818db87ffffe1dc241f1408caea6d2d",
    "fc790d199bff58b60746fe74ef250a36715c6da963f1d57ca5be22d40a31a2ed",
    "ensemble of deeplabv3plus, plain U-Net and res_se_unet at 320x208 (mean probability, float16), with "
    "left-right flips and logit offsets; mean IoU 0.552 (seed's definition) / 0.502 (dataset level) on the "
    "100 held-out photos (see ensemble/model_card.md)",
    folder="ensemble",
)

#: deeplabv3plus trained by `segtool train` on 800 CCP photos in 95 minutes on CPU (model_card.md), run
#: alone from its float16 copy in the ensemble's file (member 0): mean IoU 0.490 (seed's definition) /
#: 0.455 (dataset level) on 100 held-out photos.
DEEPLAB_MODEL = WeightsRef.member_of(
    ENSEMBLE_MODEL, 0,
    "c345153ae80be908cbc6c752cfae906616ba6bd9fc350b39994cafc065e050a6",
    "deeplabv3plus (widths 24-192) at 320x208, trained from scratch on CCP, member 0 of the ensemble's file "
    "(see model_card.md)",
)

#: The plain U-Net of the issue's comparison, trained the same way (unet/model_card.md), run alone from the
#: ensemble's file (member 1, the same float16 tensors): 0.528 / 0.472; `segtool run clothing --model unet`.
UNET_MODEL = WeightsRef.member_of(
    ENSEMBLE_MODEL, 1,
    "270a3df39d9a2aa038dbd13f1681f7dae2dd56ec3192294fcfe99949dc8f9892",
    "plain U-Net (16-256) at 320x208, the issue's baseline trained the same way, member 1 of the ensemble's "
    "file; mean IoU 0.528 (seed's definition) / 0.472 (dataset level) on the 100 held-out photos (see "
    "unet/model_card.md)",
    folder="unet",
)

#: The ensemble's third network run alone (member 2, float16): res_se_unet (16-256), 4,000 steps; mean IoU
#: 0.513 / 0.462 on the held-out photos (res_se_unet/model_card.md); `segtool run clothing --model res_se_unet`.
RES_SE_UNET_MODEL = WeightsRef.member_of(
    ENSEMBLE_MODEL, 2,
    "505ed21cc95a429214c2938868a998684416679f077e66a3e0c09a890c488163",
    "residual U-Net with squeeze-and-excitation (16-256) at 320x208, member 2 of the ensemble's file; mean IoU "
    "0.513 (seed's definition) / 0.462 (dataset level) on the 100 held-out photos (see res_se_unet/model_card.md)",
    folder="res_se_unet",
)

CLOTHING = TaskSpec(
    name="clothing",
    description="Clothing parsing of RGB photos of people into the seed's 14 classes (background, hair, skin, "
                "garments, accessories, shoes), merged from Clothing Co-Parsing's 59 tags.",
    modality="photo (RGB)",
    channels=("red", "green", "blue"),
    ndim=2,
    orientation=None,
    target_spacing=None,
    input_size=(320, 208),  # rows, cols: the seed's 320x208; any photo is resized to it and the mask back
    patch_size=(320, 208),  # one window per photo
    overlap=0.0,
    batch_size=8,
    normalization="rgb",
    labels={value: name for value, name, _, _ in CLASSES if value},
    colours={value: colour for value, _, colour, _ in CLASSES},
    labels_map=ccp_labels_map(),
    # what `segtool train clothing` trains; the bundled default is an ensemble of trained networks,
    # whose folder's config.json names it (the folder wins)
    network="deeplabv3plus",
    model_kwargs={"features": (24, 48, 96, 192)},
    augmentation="photo",
    postprocess=Postprocess(),
    models={"ensemble": ENSEMBLE_MODEL, "deeplabv3plus": DEEPLAB_MODEL, "unet": UNET_MODEL,
            "res_se_unet": RES_SE_UNET_MODEL},
    default_model="ensemble",
    citation=(
        "Yang W, Luo P, Lin L. Clothing Co-Parsing by Joint Image Segmentation and Labeling. CVPR 2014."
    ),
    licence="Apache-2.0 (training data)",
)


@hookimpl
def segtool_register_tasks(register):
    register(CLOTHING)
