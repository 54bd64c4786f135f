"""Clothing parsing of RGB street-fashion photos."""

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec

CLOTHING = TaskSpec(
    name="clothing",
    description="Clothing parsing of RGB photos of people into 14 garment, skin and hair classes.",
    modality="photo (RGB)",
    channels=("red", "green", "blue"),
    ndim=2,
    orientation=None,
    target_spacing=None,
    patch_size=(512, 384),
    overlap=0.25,
    batch_size=4,
    normalization="rgb",
    labels={
        1: "hair",
        2: "skin",
        3: "top",
        4: "outerwear",
        5: "dress",
        6: "pants",
        7: "skirt",
        8: "shorts",
        9: "legwear",
        10: "footwear",
        11: "bag",
        12: "accessories",
        13: "headwear",
        14: "eyewear",
    },
    network="deeplabv3plus",
    model_kwargs={},
    postprocess=Postprocess(),
    citation=(
        "Yang W, Luo P, Lin L. Clothing Co-Parsing by Joint Image Segmentation and Labeling. CVPR 2014."
    ),
    licence="Apache-2.0 (training data)",
)


@hookimpl
def segtool_register_tasks(register):
    register(CLOTHING)
