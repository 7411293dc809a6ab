"""Datasets from the user's own files: NumPy arrays (``arrays``) or image class folders (``image_folder``).

Paths are read relative to the current directory. NumPy files are read with
``allow_pickle=False``: distill never unpickles data. Every problem fails with a
:class:`DistillError` that names the option, the file and the fix, before any
training starts. ``extra["fingerprint"]`` is a SHA-256 of the files' contents, so
a cache can tell when a file changed under the same path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays, from_unlabelled_arrays
from distill.errors import ConfigError, DistillError

#: Accepted names of the arrays in an ``.npz``, in order of preference.
INPUT_KEYS = ("x", "inputs")
LABEL_KEYS = ("y", "labels")
#: Pillow modes of single-channel images: bilevel, 8-bit grey, grey with alpha.
SINGLE_CHANNEL_MODES = ("1", "L", "LA")
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
_MAGIC = {b"\x93NUMPY": "npy", b"PK\x03\x04": "npz"}
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_SPLIT_FORMS = "an .npz path or a mapping {x: inputs.npy, y: labels.npy}"


@DATASETS.register("arrays")
def load_arrays(
    train: Any, test: Any, transfer: Any = None, num_classes: int | None = None, unlabelled: bool = False
) -> DataSplits:
    """Your own NumPy files: ``train`` and ``test`` are each an ``.npz`` or ``{x: .npy, y: .npy}``.

    An ``.npz`` holds arrays ``x`` and ``y`` (or ``inputs`` and ``labels``). Inputs
    are ``(N, ...)`` floating point, or ``uint8`` (8-bit images), which become
    float32 ``x / 255`` in [0, 1]; other integer inputs are refused, as their scale
    is unknown. Labels are integers ``0..num_classes-1`` of shape ``(N,)``;
    ``num_classes`` defaults to the largest label plus one. ``transfer`` is an
    optional ``.npy`` (or ``.npz`` with ``x``) of unlabeled inputs.

    ``unlabelled: true`` reads inputs only — ``train`` and ``test`` are each an ``.npy`` or an ``.npz``
    with ``x`` — for step and score distillation (``num_classes`` 0).
    """
    files: dict[str, Path] = {}
    if _flag("unlabelled", unlabelled):
        if transfer is not None or num_classes is not None:
            raise ConfigError("unlabelled: true reads inputs only; remove transfer and num_classes.")
        (x_train, _), (x_test, _) = _unlabelled("train", train, files), _unlabelled("test", test, files)
        splits = from_unlabelled_arrays(x_train, x_test)
        return dataclasses.replace(splits, name="arrays", extra={"files": {k: str(v) for k, v in files.items()},
                                                                 "fingerprint": _digest(files)})
    x_train, y_train, train_names = _labelled("train", train, files)
    x_test, y_test, test_names = _labelled("test", test, files)
    x_transfer, transfer_name = (None, None) if transfer is None else _unlabelled("transfer", transfer, files)
    try:
        splits = from_arrays(x_train, y_train, x_test, y_test, x_transfer, num_classes)
    except DistillError as err:
        legend = f"x_train, y_train = {train_names}; x_test, y_test = {test_names}"
        if transfer_name:
            legend += f"; transfer = {transfer_name}"
        raise DistillError(f"{err} (here {legend})") from None
    extra = {"files": {role: str(path) for role, path in files.items()}, "fingerprint": _digest(files)}
    return dataclasses.replace(splits, name="arrays", extra=extra)


@DATASETS.register("image_folder")
def load_image_folder(
    train: Any, test: Any, size: Any = None, grayscale: bool | None = None, unlabelled: bool = False
) -> DataSplits:
    """Images in one sub-folder per class (``train/cat/1.png``); labels follow the sorted class names.

    ``test`` must have the same class sub-folders. Images become float32 in [0, 1]
    of shape ``(C, H, W)``: one channel when every image of both folders is
    single-channel (grayscale, with or without alpha), else RGB (alpha dropped,
    grey images repeated over the three channels). ``grayscale: true`` reads every
    image as one channel (ITU-R 601 luma), ``grayscale: false`` every image as RGB.
    ``size: [H, W]`` resizes every image (bilinear); without it all images must
    share one size. Everything is held in memory; ``extra`` holds ``class_names``.

    ``unlabelled: true`` reads every image under ``train`` and ``test`` (sub-folders included) without
    labels, for step and score distillation (``num_classes`` 0).
    """
    size = _size(size)
    if grayscale is not None and not isinstance(grayscale, bool):
        raise ConfigError(f"grayscale must be true or false, got {grayscale!r}.")
    roots = {"train": _folder("train", train), "test": _folder("test", test)}
    if _flag("unlabelled", unlabelled):
        return _unlabelled_images(roots, size, grayscale)
    classes = _class_names("train", roots["train"])
    test_classes = _class_names("test", roots["test"])
    if test_classes != classes:
        raise DistillError(
            f"test folder {roots['test']} has classes {test_classes} but train folder "
            f"{roots['train']} has {classes}; labels follow the sorted class names, so give both "
            f"the same sub-folders (missing in test: {sorted(set(classes) - set(test_classes))}, "
            f"not in train: {sorted(set(test_classes) - set(classes))})."
        )
    digest = hashlib.sha256()
    files = {option: [(path, label) for label, name in enumerate(classes) for path in _image_files(option, root / name)]
             for option, root in roots.items()}
    images = _read_images({option: [path for path, _ in pairs] for option, pairs in files.items()}, size, grayscale,
                          digest)
    labels = {option: np.array([label for _, label in pairs], dtype=np.int64) for option, pairs in files.items()}
    splits = from_arrays(images["train"], labels["train"], images["test"], labels["test"], num_classes=len(classes))
    extra = {"class_names": classes, "fingerprint": digest.hexdigest()}
    return dataclasses.replace(splits, name="image_folder", extra=extra)


def _unlabelled_images(roots: dict[str, Path], size: tuple[int, int] | None, grayscale: bool | None) -> DataSplits:
    """Every image under each root (sub-folders included), without labels."""
    digest = hashlib.sha256()
    files = {}
    for option, root in roots.items():
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not paths:
            raise DistillError(f"{option}: {root} holds no images ({', '.join(IMAGE_SUFFIXES)}), in it or in its "
                               "sub-folders; fix the path.")
        files[option] = paths
    images = _read_images(files, size, grayscale, digest)
    splits = from_unlabelled_arrays(images["train"], images["test"])
    return dataclasses.replace(splits, name="image_folder", extra={"fingerprint": digest.hexdigest()})


def _read_images(files: dict[str, list[Path]], size: tuple[int, int] | None, grayscale: bool | None,
                 digest: Any) -> dict[str, np.ndarray]:
    """``{option: images (N, C, H, W)}`` of lists of image files: one size across all images (or
    ``size``), one channel count (the most any image has, unless ``grayscale`` says)."""
    mode = {None: None, True: "L", False: "RGB"}[grayscale]
    first = None
    read: dict[str, list[np.ndarray]] = {}
    for option, paths in files.items():
        images = read[option] = []
        for path in paths:
            image = _read_image(path, size, mode, digest)
            if first is None:
                first = (path, image.shape)
            elif image.shape[1:] != first[1][1:]:
                raise DistillError(
                    f"{path} is {_pixels(image.shape)} but {first[0]} is {_pixels(first[1])}; "
                    "set size: [H, W] to resize every image to one size."
                )
            images.append(image)
    channels = max(image.shape[0] for images in read.values() for image in images)
    return {option: np.stack([np.broadcast_to(image, (channels, *image.shape[1:])) for image in images])
            for option, images in read.items()}


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{option} must be true or false, got {value!r}.")
    return value


# ---- arrays -----------------------------------------------------------------------------------


def _labelled(option: str, spec: Any, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, str]:
    """Inputs and labels of ``train`` or ``test``, and how error messages should name them."""
    if isinstance(spec, Mapping):
        if set(spec) != {"x", "y"}:
            raise ConfigError(
                f"{option} as a mapping needs exactly the keys x and y (paths of .npy files), "
                f"got {sorted(map(str, spec))}; e.g. {option}: {{x: inputs.npy, y: labels.npy}}."
            )
        x_path = files[f"{option}.x"] = _file(f"{option}.x", spec["x"], "an .npy path")
        y_path = files[f"{option}.y"] = _file(f"{option}.y", spec["y"], "an .npy path")
        x = _inputs(f"{option}.x", str(x_path), _npy(f"{option}.x", x_path, option))
        return x, _npy(f"{option}.y", y_path, option), f"{x_path}, {y_path}"
    path = files[option] = _file(option, spec, _SPLIT_FORMS)
    if _kind(option, path) == "npy":
        raise DistillError(
            f"{option}: {path} is a single-array .npy file, but {option} needs inputs and labels; "
            f"give {option}: {{x: inputs.npy, y: labels.npy}}, or save both in one file with "
            f"numpy.savez('{path.with_suffix('.npz')}', x=inputs, y=labels). Images without labels (step or "
            "score distillation): set unlabelled: true."
        )
    with _load(option, path) as archive:
        x_key = _key(option, path, archive.files, INPUT_KEYS, "inputs")
        y_key = _key(option, path, archive.files, LABEL_KEYS, "labels")
        x = _inputs(option, f"{path}['{x_key}']", _member(option, path, archive, x_key))
        y = _member(option, path, archive, y_key)
    return x, y, f"{path}['{x_key}'], ['{y_key}']"


def _unlabelled(option: str, spec: Any, files: dict[str, Path]) -> tuple[np.ndarray, str]:
    """Inputs without labels (an ``.npy``, or an ``.npz`` with ``x``) and their name in messages."""
    path = files[option] = _file(option, spec, "an .npy or .npz path")
    if _kind(option, path) == "npy":
        return _inputs(option, str(path), _load(option, path)), str(path)
    with _load(option, path) as archive:
        key = _key(option, path, archive.files, INPUT_KEYS, "inputs")
        where = f"{path}['{key}']"
        return _inputs(option, where, _member(option, path, archive, key)), where


def _existing(option: str, value: Any, forms: str, folder: bool, fix: str) -> Path:
    """``value`` as the path of an existing file (or folder)."""
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{option} must be {forms}, got {type(value).__name__} {value!r}.")
    path = Path(value).expanduser()
    if not (path.is_dir() if folder else path.is_file()):
        wrong = ("is a file, not a folder" if folder else "is a folder, not a file")
        problem = wrong if path.exists() else "does not exist"
        raise DistillError(
            f"{option}: {path} {problem} (relative paths start at the current directory, {Path.cwd()}); {fix}."
        )
    return path


def _file(option: str, value: Any, forms: str) -> Path:
    """``value`` as the path of an existing file."""
    return _existing(option, value, forms, False, f"fix the path in {option}")


def _kind(option: str, path: Path) -> str:
    """``"npy"`` or ``"npz"``, from the file's first bytes (whatever its name ends with)."""
    with _reading(option, path), open(path, "rb") as handle:
        head = handle.read(6)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    raise DistillError(
        f"{option}: {path} is not a NumPy .npy or .npz file (it starts with {head!r}); "
        "write arrays with numpy.save (one array) or numpy.savez (x=..., y=...)."
    )


def _npy(option: str, path: Path, split: str) -> np.ndarray:
    """The array of ``path``, an entry of ``split: {x: ..., y: ...}``: an ``.npy``, not an archive."""
    if _kind(option, path) == "npz":
        raise DistillError(
            f"{option}: {path} is an .npz archive, not one .npy array; give the archive itself "
            f"as {split}: {path}."
        )
    return _load(option, path)


def _load(option: str, path: Path) -> Any:
    """``numpy.load`` without pickle: an array (``.npy``) or a lazy archive (``.npz``)."""
    with _reading(option, path):
        return np.load(path, allow_pickle=False)


def _key(option: str, path: Path, keys: list[str], accepted: tuple[str, ...], what: str) -> str:
    """The one key of ``accepted`` present in the archive."""
    found = [key for key in accepted if key in keys]
    if len(found) == 1:
        return found[0]
    if found:
        raise DistillError(
            f"{option}: {path} has both {found[0]!r} and {found[1]!r}; keep only one array of {what}."
        )
    raise DistillError(
        f"{option}: {path} has no array of {what}: expected the key {accepted[0]!r} or "
        f"{accepted[1]!r}, found {', '.join(map(repr, keys)) or 'no arrays'}; save it with "
        "numpy.savez(path, x=inputs, y=labels)."
    )


def _member(option: str, path: Path, archive: Any, key: str) -> np.ndarray:
    with _reading(option, f"{path}['{key}']"):
        return archive[key]


def _inputs(option: str, where: str, x: np.ndarray) -> np.ndarray:
    """``x`` with ``uint8`` pixels scaled to float32 [0, 1]; other integer dtypes refused."""
    if x.dtype == np.uint8:
        x = x.astype(np.float32)
        x /= 255
        return x
    if x.dtype.kind in "biu":
        raise DistillError(
            f"{option}: {where} has dtype {x.dtype}; inputs must be floating point, or uint8 for "
            "8-bit images (scaled to [0, 1]). Save them as float32 in the scale you want, e.g. "
            "x.astype('float32') / 65535 for 16-bit images."
        )
    return x


@contextmanager
def _reading(option: str, where: Any) -> Iterator[None]:
    """An error while reading ``where`` becomes a :class:`DistillError` that says how to save the file."""
    try:
        yield
    except DistillError:
        raise
    except _READ_ERRORS as err:
        raise DistillError(
            f"{option}: cannot read {where} ({err}). Re-save it with numpy.save or numpy.savez; "
            "distill reads files without pickle, so arrays must hold plain numbers, not dtype=object."
        ) from None


def _digest(files: dict[str, Path]) -> str:
    """SHA-256 over each role and its file's contents."""
    digest = hashlib.sha256()
    for role, path in files.items():
        with open(path, "rb") as handle:
            digest.update(role.encode() + hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


# ---- image folders ----------------------------------------------------------------------------


def _size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)
    ):
        raise ConfigError(f"size must be [height, width] in pixels, e.g. [32, 32]; got {size!r}.")
    return size[0], size[1]


def _folder(option: str, value: Any) -> Path:
    return _existing(option, value, "a folder path", True, "give a folder with one sub-folder of images per class")


def _class_names(option: str, root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``root``: 2 or more."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise DistillError(
            f"{option}: {root} has {len(names)} class sub-folder(s) {names}; put each class's images "
            f"in its own sub-folder, e.g. {root / 'cat' / '1.png'} and {root / 'dog' / '1.png'} "
            "(2 classes or more); for images without classes (step or score distillation) set unlabelled: true."
        )
    return names


def _image_files(option: str, folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DistillError(
            f"{option}: class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "add images or remove the folder from both train and test."
        )
    return files


def _read_image(path: Path, size: tuple[int, int] | None, mode: str | None, digest: Any) -> np.ndarray:
    """One image as float32 ``(C, H, W)`` in [0, 1], read in ``mode`` ("L" or "RGB"; None: "L" for a
    single-channel image, else "RGB"); its name and bytes go into ``digest``."""
    from PIL import Image  # Pillow comes with matplotlib; imported only when images are read

    digest.update(str(path).encode() + hashlib.sha256(path.read_bytes()).digest())
    try:
        with Image.open(path) as opened:
            if opened.mode in ("I", "F") or opened.mode.startswith("I;"):
                raise DistillError(
                    f"{path} has {opened.mode!r} pixels (16-bit or floating point); image_folder reads "
                    "8-bit images. Convert it to 8-bit, or save the arrays yourself and use the "
                    "arrays dataset."
                )
            image = opened.convert(mode or ("L" if opened.mode in SINGLE_CHANNEL_MODES else "RGB"))
    except OSError as err:
        raise DistillError(f"cannot read image {path} ({err}); replace the file or remove it.") from None
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _pixels(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[2]} (H×W)"
