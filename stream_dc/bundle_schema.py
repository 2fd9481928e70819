"""The schema of a model bundle's ``config.json``: every field's type, range and finiteness, checked when a bundle
loads, before anything is built from it, so that a tampered or damaged file ends in one line naming the field
(``BundleError``) instead of a traceback, or worse, in numbers that are accepted silently (a hop of 0, a negative
top frequency, NaN).

``check_config(values)`` checks the parsed JSON object; the limits are generous (a bundle for another rate, another
number of bands or a bigger network passes), but every value must be one a separation can run with.
"""
from __future__ import annotations

import math

MAX_DEPTH = 32  # nesting of JSON objects and lists anywhere in the file


class SchemaError(ValueError):
    """A field of ``config.json`` that no separation can run with; the message names it."""


def _number(values: dict, path: str, low: float, high: float, integer: bool = False, above: bool = False):
    name = path.rsplit(".", 1)[-1]
    if name not in values:
        raise SchemaError(f"{path} is missing (the file is incomplete)")
    value = values[name]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SchemaError(f"{path} must be {'a whole number' if integer else 'a number'}, not {_show(value)}")
    if not math.isfinite(value) or value < low or value > high or (above and value == low):
        bound = f"above {low:g}" if above else f"at least {low:g}"
        raise SchemaError(f"{path} is {_show(value)}: it must be {bound} and at most {high:g}")
    return value


def _numbers(values: dict, path: str, length: int | None = None, low: float = -1e30, high: float = 1e30,
             above: bool = False) -> list:
    name = path.rsplit(".", 1)[-1]
    if name not in values:
        raise SchemaError(f"{path} is missing (the file is incomplete)")
    return _number_list(values[name], path, length, low, high, above)


def _number_list(items, path: str, length: int | None = None, low: float = -1e30, high: float = 1e30,
                 above: bool = False) -> list:
    if not isinstance(items, list):
        raise SchemaError(f"{path} must be a list of numbers, not {_show(items)}")
    if length is not None and len(items) != length:
        raise SchemaError(f"{path} must have {length} values, not {len(items)}")
    for i, value in enumerate(items):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{path}[{i}] must be a number, not {_show(value)}")
        if not math.isfinite(value) or value < low or value > high or (above and value == low):
            bounds = f"above {low:g}" if above else f"at least {low:g}"
            raise SchemaError(f"{path}[{i}] is {_show(value)}: it must be {bounds} and at most {high:g}")
    return items


def _object(values: dict, path: str, required: bool = True) -> dict | None:
    name = path.rsplit(".", 1)[-1]
    value = values.get(name)
    if value is None and not required:
        return None
    if name not in values:
        raise SchemaError(f"{path} is missing (the file is incomplete)")
    if not isinstance(value, dict):
        raise SchemaError(f"{path} must be an object, not {_show(value)}")
    return value


def _text(values: dict, path: str, required: bool = True) -> None:
    name = path.rsplit(".", 1)[-1]
    value = values.get(name)
    if value is None and not required:
        return
    if name not in values:
        raise SchemaError(f"{path} is missing (the file is incomplete)")
    if not isinstance(value, str):
        raise SchemaError(f"{path} must be text, not {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def depth(value, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests objects and lists (stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_config(values: dict) -> None:
    """Raise SchemaError naming the first field of the ``config.json`` object ``values`` that cannot work."""
    if depth(values) > MAX_DEPTH:
        raise SchemaError(f"nested more than {MAX_DEPTH} levels deep")
    features = _object(values, "features")
    rate = _number(features, "features.sample_rate", 1000, 192_000, integer=True)
    n_fft = _number(features, "features.n_fft", 16, 1 << 16, integer=True)
    _number(features, "features.hop_length", 1, n_fft, integer=True)
    n_mels = _number(features, "features.n_mels", 1, 1024, integer=True)
    fmin = _number(features, "features.fmin", 0, rate / 2)
    _number(features, "features.fmax", fmin, rate / 2, above=True)
    _number(features, "features.log_floor", 0, 1, above=True)
    _number(features, "features.silence_db", 0, 200, above=True)
    unknown = sorted(set(features) - {"sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "log_floor",
                                      "silence_db"})
    if unknown:
        raise SchemaError(f"features has unknown fields: {', '.join(unknown)}")
    _numbers(values, "feature_mean", n_mels)
    _numbers(values, "feature_std", n_mels, low=0, above=True)
    dim = _number(values, "embedding_dim", 1, 1024, integer=True)
    _number(values, "window_frames", 1, 1 << 20, integer=True)
    _numbers(values, "voice_centroid", dim)
    _numbers(values, "accompaniment_centroid", dim)
    _text(values, "model_sha256")
    _text(values, "chunked_model_sha256", required=False)
    _text(values, "gpu_model_sha256", required=False)
    for name in ("input_name", "output_name"):
        _text(values, name, required=False)
    for name in ("architecture", "provenance"):
        _object(values, name, required=False)
    if "voice_thresholds" in values:
        _numbers(values, "voice_thresholds", 2, low=-10, high=10)  # scores lie in [-2, 2]: beyond, never or always
    if "mask_softness" in values:
        _number(values, "mask_softness", 0, 1e6)
    if values.get("mask_head_use", "off") not in ("off", "average", "mask"):
        raise SchemaError(f"mask_head_use is {_show(values['mask_head_use'])}: it must be off, average or mask")
    if values.get("mask_head_use", "off") != "off" and not (values.get("architecture") or {}).get("mask_head"):
        raise SchemaError("mask_head_use names a mask head that the network's architecture does not have")
    _check_gate(values)
    _check_refiner(values)


def _check_gate(values: dict) -> None:
    gate = _object(values, "voice_activity", required=False)
    if gate is not None:
        _numbers(gate, "voice_activity.weights")
        _number(gate, "voice_activity.bias", -1e6, 1e6)
        if "offset" in gate:
            _number(gate, "voice_activity.offset", -1e6, 1e6)


def _check_refiner(values: dict) -> None:
    refiner = _object(values, "mask_refiner", required=False)
    if refiner is None:
        return
    for net in ("mono", "stereo"):
        layers = _object(refiner, f"mask_refiner.{net}")
        weights, biases = layers.get("weights"), layers.get("biases")
        if not isinstance(weights, list) or not isinstance(biases, list) or not weights:
            raise SchemaError(f"mask_refiner.{net} must hold lists of weights and biases")
        for i, matrix in enumerate(weights):
            if not isinstance(matrix, list) or not matrix:
                raise SchemaError(f"mask_refiner.{net}.weights[{i}] must be a matrix of numbers")
            for j, row in enumerate(matrix):
                _number_list(row, f"mask_refiner.{net}.weights[{i}][{j}]")
        for i, bias in enumerate(biases):
            _number_list(bias, f"mask_refiner.{net}.biases[{i}]")
