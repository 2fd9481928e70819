"""stream-dc: real-time singing-voice separation by deep clustering (Luo, Chen & Ellis, MIREX 2016).

The runtime needs numpy, onnxruntime, soundfile, sounddevice and aiohttp (the player's web page); it never imports
PyTorch.

    from stream_dc import Separator, StreamProcessor, SeparationOptions
    vocals, accompaniment = Separator().separate(audio, sample_rate)      # (samples, channels) arrays
"""
__version__ = "0.2.0"

from .audio import InputError  # noqa: E402
from .bundle import Bundle, BundleError, load_bundle  # noqa: E402
from .options import SeparationOptions  # noqa: E402
from .separator import Separator  # noqa: E402
from .stream import PRESETS, LatencyPreset, StreamProcessor  # noqa: E402

__all__ = ["Bundle", "BundleError", "InputError", "LatencyPreset", "PRESETS", "SeparationOptions", "Separator",
           "StreamProcessor", "load_bundle", "__version__"]
