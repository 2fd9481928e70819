"""Model bundle: ``model.onnx`` plus ``config.json`` holding every parameter needed to run it.

The default bundle ships in ``stream_dc/models/default``. Loading checks the whole bundle (files present, JSON
well formed, shapes consistent, the ONNX file's checksum) so that a corrupt or mismatched bundle fails with one
clear message instead of producing silently wrong audio.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .activity import VoiceActivity
from .bundle_schema import SchemaError, check_config
from .cluster import CLEAR_VOICE, WEAK_VOICE
from .features import FeatureConfig
from .files import create_temporary, replaced_on_success
from .refine import MaskRefiner

BUNDLE_FORMAT = 1
MODEL_FILE = "model.onnx"
CHUNKED_MODEL_FILE = "model_chunked.onnx"  # optional: the same network one chunk at a time (the live preset)
GPU_MODEL_FILE = "model_gpu.onnx"  # optional: model.onnx with float weights, for CUDA (which has no int8 LSTM)
CONFIG_FILE = "config.json"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "models" / "default"


class BundleError(ValueError):
    """The model bundle is missing, corrupt or inconsistent."""


@dataclass
class BundleConfig:
    """Contents of ``config.json``."""

    features: FeatureConfig
    feature_mean: np.ndarray  # (n_mels,)
    feature_std: np.ndarray  # (n_mels,)
    embedding_dim: int
    window_frames: int
    voice_centroid: np.ndarray  # (embedding_dim,) mean voice embedding on training data
    accompaniment_centroid: np.ndarray  # (embedding_dim,)
    model_sha256: str
    architecture: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    # voice labelling thresholds (clear, weak) measured on training mixtures; see cluster.voice_clusters
    voice_thresholds: tuple[float, float] = (CLEAR_VOICE, WEAK_VOICE)
    mask_softness: float = 0.0  # 0: binary masks; > 0: soft masks from the cluster posteriors
    voice_activity: VoiceActivity | None = None  # frame voice-activity gate on the voice masks (activity.py)
    mask_refiner: MaskRefiner | None = None  # per-bin correction of the masks at synthesis (refine.py)
    chunked_model_sha256: str | None = None  # set when the bundle holds model_chunked.onnx
    gpu_model_sha256: str | None = None  # set when the bundle holds model_gpu.onnx
    mask_head_use: str = "off"  # how a Chimera network's mask head joins the cluster masks (masks.HEAD_USES)
    input_name: str = "features"
    output_name: str = "embeddings"
    format_version: int = BUNDLE_FORMAT

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "features": self.features.to_dict(),
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_std": [float(v) for v in self.feature_std],
            "embedding_dim": int(self.embedding_dim),
            "window_frames": int(self.window_frames),
            "voice_centroid": [float(v) for v in self.voice_centroid],
            "accompaniment_centroid": [float(v) for v in self.accompaniment_centroid],
            "model_sha256": self.model_sha256,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "architecture": self.architecture,
            "provenance": self.provenance,
            "voice_thresholds": [float(v) for v in self.voice_thresholds],
            "mask_softness": float(self.mask_softness),
            **({"chunked_model_sha256": self.chunked_model_sha256} if self.chunked_model_sha256 else {}),
            **({"gpu_model_sha256": self.gpu_model_sha256} if self.gpu_model_sha256 else {}),
            **({"mask_head_use": self.mask_head_use} if self.mask_head_use != "off" else {}),
            **({"voice_activity": self.voice_activity.to_dict()} if self.voice_activity is not None else {}),
            **({"mask_refiner": self.mask_refiner.to_dict()} if self.mask_refiner is not None else {}),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "BundleConfig":
        try:
            version = int(values["format_version"])
            if version != BUNDLE_FORMAT:
                raise BundleError(f"unsupported bundle format {version} (this stream-dc reads format {BUNDLE_FORMAT})")
            config = cls(
                features=FeatureConfig.from_dict(values["features"]),
                feature_mean=np.asarray(values["feature_mean"], np.float32),
                feature_std=np.asarray(values["feature_std"], np.float32),
                embedding_dim=int(values["embedding_dim"]),
                window_frames=int(values["window_frames"]),
                voice_centroid=np.asarray(values["voice_centroid"], np.float32),
                accompaniment_centroid=np.asarray(values["accompaniment_centroid"], np.float32),
                model_sha256=str(values["model_sha256"]),
                architecture=dict(values.get("architecture", {})),
                provenance=dict(values.get("provenance", {})),
                input_name=str(values.get("input_name", "features")),
                output_name=str(values.get("output_name", "embeddings")),
                format_version=version,
                voice_thresholds=tuple(float(v) for v in values.get("voice_thresholds", (CLEAR_VOICE, WEAK_VOICE))),
                mask_softness=float(values.get("mask_softness", 0.0)),
                chunked_model_sha256=values.get("chunked_model_sha256"),
                gpu_model_sha256=values.get("gpu_model_sha256"),
                mask_head_use=str(values.get("mask_head_use", "off")),
                voice_activity=(VoiceActivity.from_dict(values["voice_activity"])
                                if values.get("voice_activity") is not None else None),
                mask_refiner=(MaskRefiner.from_dict(values["mask_refiner"])
                              if values.get("mask_refiner") is not None else None),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"config.json is incomplete or malformed ({type(error).__name__}: {error})") from None
        config.validate()
        return config

    def validate(self) -> None:
        n_mels, dim = self.features.n_mels, self.embedding_dim
        checks = [
            (self.feature_mean.shape == (n_mels,), f"feature_mean must have {n_mels} values"),
            (self.feature_std.shape == (n_mels,), f"feature_std must have {n_mels} values"),
            (bool(np.all(self.feature_std > 0)), "feature_std must be positive"),
            (dim > 0 and self.window_frames > 0, "embedding_dim and window_frames must be positive"),
            (self.voice_centroid.shape == (dim,), f"voice_centroid must have {dim} values"),
            (self.accompaniment_centroid.shape == (dim,), f"accompaniment_centroid must have {dim} values"),
            (len(self.voice_thresholds) == 2 and all(np.isfinite(self.voice_thresholds)),
             "voice_thresholds must be two finite numbers"),
            (bool(np.isfinite(self.mask_softness) and self.mask_softness >= 0), "mask_softness must be >= 0"),
        ]
        for arrays in (self.feature_mean, self.feature_std, self.voice_centroid, self.accompaniment_centroid):
            checks.append((bool(np.all(np.isfinite(arrays))), "config.json holds non-finite numbers"))
        if self.voice_activity is not None:
            checks.extend((False, problem) for problem in self.voice_activity.problems(n_mels, dim))
        if self.mask_refiner is not None:
            checks.extend((False, problem) for problem in self.mask_refiner.problems())
        for ok, message in checks:
            if not ok:
                raise BundleError(f"config.json: {message}")


@dataclass
class Bundle:
    """A loaded, verified model bundle. Its GPU graph, which only a CUDA session needs, is read (and checked) when
    first asked for: ``gpu_model_bytes()``."""

    directory: Path
    config: BundleConfig
    model_bytes: bytes
    chunked_model_bytes: bytes | None = None
    _gpu_model_bytes: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.directory.name

    def gpu_model_bytes(self) -> bytes | None:
        """``model_gpu.onnx``, verified against its checksum, or None when the bundle has none."""
        if self._gpu_model_bytes is None and self.config.gpu_model_sha256:
            self._gpu_model_bytes = _verified(self.directory, GPU_MODEL_FILE, self.config.gpu_model_sha256)
        return self._gpu_model_bytes


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_bundle(directory: str | Path | None = None) -> Bundle:
    """Load and verify a bundle directory (the shipped default when ``directory`` is None)."""
    directory = Path(directory) if directory is not None else DEFAULT_BUNDLE
    if not directory.is_dir():
        if directory == DEFAULT_BUNDLE:
            raise BundleError(f"the default model is missing from the installation ({directory})")
        raise BundleError(f"model bundle not found: {directory} is not a directory")
    config_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
    for path in (config_path, model_path):
        if not path.is_file():
            raise BundleError(f"model bundle {directory} has no {path.name}")
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{config_path} is not valid JSON ({error})") from None
    except RecursionError:
        raise BundleError(f"{config_path} is nested too deeply to be a bundle's configuration") from None
    if not isinstance(values, dict):
        raise BundleError(f"{config_path} does not hold a JSON object")
    try:
        check_config(values)
    except SchemaError as error:
        raise BundleError(f"{config_path}: {error}") from None
    config = BundleConfig.from_dict(values)
    model_bytes = model_path.read_bytes()
    if sha256_of(model_bytes) != config.model_sha256:
        raise BundleError(f"{model_path} does not match its config.json (checksum differs): corrupt or mismatched "
                          "bundle")
    chunked_bytes = None
    if config.chunked_model_sha256:
        chunked_bytes = _verified(directory, CHUNKED_MODEL_FILE, config.chunked_model_sha256)
    return Bundle(directory=directory, config=config, model_bytes=model_bytes, chunked_model_bytes=chunked_bytes)


def _verified(directory: Path, file_name: str, checksum: str) -> bytes:
    """The bytes of an optional graph of the bundle that its config.json names, checked against ``checksum``."""
    path = directory / file_name
    if not path.is_file():
        raise BundleError(f"model bundle {directory} has no {file_name} though its config.json names one")
    data = path.read_bytes()
    if sha256_of(data) != checksum:
        raise BundleError(f"{path} does not match its config.json (checksum differs): corrupt or mismatched bundle")
    return data


def write_config(directory: str | Path, config: BundleConfig) -> None:
    """Replace the ``config.json`` of an existing bundle (its networks unchanged), atomically."""
    config.validate()
    with replaced_on_success(Path(directory) / CONFIG_FILE) as temporary:
        temporary.write_text(json.dumps(config.to_dict(), indent=1) + "\n", encoding="utf-8")


def write_gpu_model(directory: str | Path, gpu_model_bytes: bytes) -> None:
    """Add (or replace) the GPU graph of an existing bundle: the graph first, then its checksum in config.json, each
    file replaced atomically."""
    directory = Path(directory)
    config = load_bundle(directory).config
    with replaced_on_success(directory / GPU_MODEL_FILE) as temporary:
        temporary.write_bytes(gpu_model_bytes)
    config.gpu_model_sha256 = sha256_of(gpu_model_bytes)
    write_config(directory, config)


def write_bundle(directory: str | Path, config: BundleConfig, model_bytes: bytes,
                 chunked_model_bytes: bytes | None = None, gpu_model_bytes: bytes | None = None) -> Path:
    """Write a bundle atomically: the files go to a temporary sibling directory that is then renamed."""
    directory = Path(directory)
    config.model_sha256 = sha256_of(model_bytes)
    config.chunked_model_sha256 = sha256_of(chunked_model_bytes) if chunked_model_bytes else None
    config.gpu_model_sha256 = sha256_of(gpu_model_bytes) if gpu_model_bytes else None
    config.validate()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = create_temporary(directory.parent, f".{directory.name}.", folder=True)
    try:
        (staging / MODEL_FILE).write_bytes(model_bytes)
        if chunked_model_bytes:
            (staging / CHUNKED_MODEL_FILE).write_bytes(chunked_model_bytes)
        if gpu_model_bytes:
            (staging / GPU_MODEL_FILE).write_bytes(gpu_model_bytes)
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1) + "\n", encoding="utf-8")
        if directory.exists():
            backup = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(directory, backup)
            os.replace(staging, directory)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
