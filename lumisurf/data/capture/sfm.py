"""Structure from motion with pycolmap (optional extra ``capture``): SIFT on the CPU, exhaustive or sequential
matching, incremental mapping; the largest model is kept and written in COLMAP's binary layout.

Poses follow COLMAP (world-to-camera, OpenCV camera axes); :mod:`lumisurf.data.readers.colmap` reads them.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from lumisurf.errors import DataError

Matcher = Literal["auto", "exhaustive", "sequential"]
EXHAUSTIVE_MAX = 120  # "auto": exhaustive matching up to this many images, sequential beyond
MIN_FEATURES = 100  # fewer SIFT features than this: a textureless, blurry or tiny image
MAPPING_ATTEMPTS = 3  # incremental mapping runs (seeds seed, seed + 1, ...) while the best model is poor
RETRY_BELOW = 0.9  # ... i.e. registers fewer than this fraction of the images


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise DataError('structure from motion needs pycolmap: pip install -e ".[capture]"') from None
    return pycolmap


@dataclass
class SfmReport:
    """What the reconstruction found (reprojection error in pixels of the images given to SfM)."""

    n_images: int
    n_registered: int = 0
    n_points: int = 0
    mean_reprojection_error: float = float("nan")
    mean_track_length: float = float("nan")
    n_models: int = 0
    matcher: str = ""
    unregistered: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"registered {self.n_registered}/{self.n_images} images ({self.n_models} model(s) found, the "
            f"largest kept), {self.n_points} points",
            f"mean reprojection error {self.mean_reprojection_error:.3f} px, mean track length "
            f"{self.mean_track_length:.2f}, matcher {self.matcher}",
            "time " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()),
        ]


def pick_matcher(matcher: Matcher, n_images: int, from_video: bool) -> str:
    if matcher != "auto":
        return matcher
    return "sequential" if from_video or n_images > EXHAUSTIVE_MAX else "exhaustive"


def _diagnose(db_path: Path, names: list[str], registered: int) -> str:
    """Why few images registered, from the feature/match database: the likeliest cause first."""
    pycolmap = _pycolmap()
    db = pycolmap.Database.open(str(db_path))
    try:
        feats = {im.name: db.num_keypoints_for_image(im.image_id) for im in db.read_all_images()}
        pairs = db.num_verified_image_pairs()
    finally:
        db.close()
    poor = sorted(n for n in names if feats.get(n, 0) < MIN_FEATURES)
    if len(poor) > len(names) // 2:
        return (
            f"{len(poor)} of {len(names)} images have fewer than {MIN_FEATURES} SIFT features (first: {poor[0]}): "
            f"the photos are blurry, dark, tiny or the object has no texture"
        )
    if pairs < len(names) - 1:
        return (
            f"only {pairs} image pairs share enough verified matches for {len(names)} images: the views overlap "
            f"too little (take photos closer together), or a video needs --matcher exhaustive"
        )
    return (
        f"{pairs} image pairs match but only {registered} images could be placed: too little parallax between "
        f"views (rotating in place, a flat scene) or repeated patterns"
    )


def _options(pycolmap, max_image_size: int, threads: int):
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = max_image_size
    ext.num_threads = threads
    ext.use_gpu = False
    ext.sift.estimate_affine_shape = True  # affine-adapted, domain-size-pooled SIFT: more matches across wide
    ext.sift.domain_size_pooling = True  # baselines and on shiny objects (COLMAP's recommended CPU setting)
    match = pycolmap.FeatureMatchingOptions()
    match.num_threads = threads
    match.use_gpu = False
    match.guided_matching = True
    return ext, match


def _map(
    pycolmap, db_path: Path, image_dir: Path, models_dir: Path, threads: int, seed: int, n: int, progress: bool
) -> dict:
    """One incremental mapping run (seeded) -> {index: Reconstruction}."""
    pycolmap.set_random_seed(seed)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.mapper.random_seed = seed
    opts.triangulation.random_seed = seed
    opts.mapper.abs_pose_min_num_inliers = 15  # small photos of a single object: fewer, but good, matches
    opts.mapper.init_min_num_inliers = 50
    opts.min_num_matches = 10
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir(parents=True)
    with tqdm(total=n, desc="registering", unit="img", disable=not progress) as bar:
        models = pycolmap.incremental_mapping(
            str(db_path),
            str(image_dir),
            str(models_dir),
            options=opts,
            initial_image_pair_callback=lambda: bar.update(2),
            next_image_callback=lambda: bar.update(1),
        )
    shutil.rmtree(models_dir, ignore_errors=True)  # the kept model is written by the caller
    return models


def run_sfm(
    image_dir: Path,
    work_dir: Path,
    names: list[str],
    matcher: str,
    single_camera: bool = True,
    camera_model: str = "SIMPLE_RADIAL",
    max_image_size: int = 2000,
    threads: int = -1,
    min_registered: float = 0.5,
    seed: int = 0,
    log=print,
    progress: bool = True,
    mask_dir: Path | None = None,
):
    """Reconstruct the images ``names`` of ``image_dir``; returns (the largest pycolmap Reconstruction, report).

    ``work_dir`` receives ``database.db``. ``mask_dir``: COLMAP masks (``<image name>.png``, black = no
    features there), so a static room behind a turntable object does not pull the poses. Raises DataError
    naming the likely cause when fewer than ``min_registered`` of the images (and fewer than 3) register.
    """
    pycolmap = _pycolmap()
    pycolmap.logging.minloglevel = 2  # COLMAP's own INFO/WARNING chatter off; our log lines and bars say it
    pycolmap.set_random_seed(seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    db_path = work_dir / "database.db"
    db_path.unlink(missing_ok=True)
    report = SfmReport(n_images=len(names), matcher=matcher)
    ext, match = _options(pycolmap, max_image_size, threads)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO

    t0 = time.perf_counter()
    log(f"[sfm] SIFT features of {len(names)} images (CPU)")
    pycolmap.extract_features(
        str(db_path),
        str(image_dir),
        image_names=names,
        camera_mode=mode,
        reader_options=reader,
        extraction_options=ext,
        device=pycolmap.Device.cpu,
    )
    report.seconds["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"[sfm] {matcher} matching")
    verify = pycolmap.TwoViewGeometryOptions()
    verify.ransac.random_seed = seed
    if matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 15
        pycolmap.match_sequential(
            str(db_path),
            matching_options=match,
            pairing_options=pairing,
            verification_options=verify,
            device=pycolmap.Device.cpu,
        )
    else:
        pycolmap.match_exhaustive(
            str(db_path), matching_options=match, verification_options=verify, device=pycolmap.Device.cpu
        )
    report.seconds["matching"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    best, report.n_models = None, 0
    for attempt in range(MAPPING_ATTEMPTS):  # mapping is cheap next to features: retry a poor start
        log(f"[sfm] incremental mapping{f' (attempt {attempt + 1}, another seed)' if attempt else ''}")
        models = _map(pycolmap, db_path, image_dir, work_dir / "models", threads, seed + attempt, len(names), progress)
        report.n_models = max(report.n_models, len(models))
        cand = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        if cand is not None and (best is None or cand.num_reg_images() > best.num_reg_images()):
            best = cand
        if best is not None and best.num_reg_images() >= RETRY_BELOW * len(names):
            break
    report.seconds["mapping"] = time.perf_counter() - t0

    registered = 0 if best is None else best.num_reg_images()
    if registered < 3 or registered < min_registered * len(names):
        raise DataError(
            f"structure from motion registered only {registered} of {len(names)} images: "
            f"{_diagnose(db_path, names, registered)}"
        )
    report.n_registered = registered
    report.n_points = best.num_points3D()
    report.mean_reprojection_error = float(best.compute_mean_reprojection_error())
    report.mean_track_length = float(best.compute_mean_track_length())
    placed = {best.image(i).name for i in best.reg_image_ids()}
    report.unregistered = sorted(set(names) - placed)
    return best, report
