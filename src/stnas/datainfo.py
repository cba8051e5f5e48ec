"""What a model needs to know about its data: shape, classes, preprocessing.

:func:`describe` answers for named datasets (``stnas.data.INFO``) and user data
(``stnas.userdata``) alike; :func:`check_fits` refuses a space that does not fit.
"""

from __future__ import annotations

from stnas.choices import DATASETS
from stnas.data import CLASS_NAMES, INFO
from stnas.errors import DataError
from stnas.userdata import is_user_data, load_user_data


def describe(dataset) -> dict:
    """``{dataset, channels, size, classes, mean, std, pixel_scale, class_names}``.

    ``size`` is None for imagenet (its images vary; the recipe crops them). The model's
    input is ``(pixels / pixel_scale - mean) / std`` per channel, NCHW.
    """
    if is_user_data(dataset):
        d = load_user_data(dataset)
        mean, std = d.mean_std
        return dict(dataset=d.name, channels=d.channels, size=d.size, classes=len(d.classes), mean=list(mean),
                    std=list(std), pixel_scale=255.0, class_names=list(d.classes))
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}, or an image folder "
                        f"or .npz file")
    info = INFO[dataset]
    names = CLASS_NAMES.get(dataset) or [str(k) for k in range(info["classes"])]
    return dict(dataset=dataset, channels=len(info["mean"]), size=None if dataset == "imagenet" else info["size"],
                classes=info["classes"], mean=list(info["mean"]), std=list(info["std"]),
                pixel_scale=16.0 if dataset == "digits" else 255.0, class_names=names)


def check_fits(space, dataset, image_size=None) -> dict:
    """The data's description, after checking that ``space`` fits it.

    Channels and classes must match; so must the image size unless ``image_size``
    (``data.image_size``) asks for a resize.

    Raises:
        DataError: the space does not fit the data (one line naming both).
    """
    d = describe(dataset)
    size_ok = image_size is not None or d["size"] in (None, space.input_size)
    if d["channels"] != space.input_channels or d["classes"] != space.num_classes or not size_ok:
        size = f"{d['size']}×{d['size']}, " if d["size"] else ""
        hint = "" if size_ok or d["channels"] != space.input_channels or d["classes"] != space.num_classes else \
            f"; pass data.image_size={space.input_size} to resize"
        raise DataError(f"dataset {d['dataset']} ({size}{d['channels']} channels, {d['classes']} classes) does not fit "
                        f"space {space.name!r} ({space.input_size}×{space.input_size}, {space.input_channels} "
                        f"channels, {space.num_classes} classes){hint}")
    return d
