"""Media: decoding a clip's frames and 16 kHz mono audio, frame sampling, face boxes, and the audio features
the policy hears (log-mel spectrogram image, prosody words). No dataset layouts, no cache, no I/O beyond
reading the one file asked for; ``erv_lab.data`` builds the dataset from these. Introduced in notebook 01.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np

SR = 16000  # audio sample rate everywhere in erv-lab
FRAME_EXT = (".jpg", ".jpeg", ".png", ".bmp")


# ============================================================================ decoding
class DecodeError(RuntimeError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_clip(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """All frames (T, H, W, 3) uint8 RGB and 16 kHz mono float32 audio (None when there is no audio track).

    A frame folder gives its images in name order and no audio; a still image (``FRAME_EXT``, decoded by
    PyAV like a video) gives one frame and no audio. Raises DecodeError(reason) for empty, truncated or
    unreadable files.
    """
    import cv2

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_EXT)
        frames = [f for f in (cv2.imread(str(p)) for p in files) if f is not None]
        if not frames:
            raise DecodeError("no_frames", str(path))
        h, w = frames[0].shape[:2]
        return np.stack([cv2.resize(f, (w, h))[:, :, ::-1] for f in frames]), None
    if not path.exists() or path.stat().st_size == 0:
        raise DecodeError("empty_file", str(path))
    import av

    try:
        with av.open(str(path)) as box:
            frames = [_rgb(f) for f in box.decode(video=0)] if box.streams.video else []
        audio = None
        with av.open(str(path)) as box:
            if box.streams.audio:
                res = av.AudioResampler(format="flt", layout="mono", rate=SR)
                chunks = [x.to_ndarray().reshape(-1) for f in box.decode(audio=0) for x in res.resample(f)]
                chunks += [x.to_ndarray().reshape(-1) for x in res.resample(None)]
                audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise DecodeError("unreadable", f"{path}: {exc}") from exc
    if not frames:
        raise DecodeError("no_frames", str(path))
    return np.stack(frames), audio


def _rgb(frame) -> np.ndarray:
    """RGB array of a decoded frame; yuv420p through OpenCV (PyAV's own conversion is ~10x slower here)."""
    import cv2

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def sample_indices(n: int, k: int, train: bool = False, rng: random.Random | None = None) -> list[int]:
    """k frame indices from n: split [0, n) into k equal segments; the centre of each at evaluation, a random
    frame of each in training. Clips shorter than k repeat their last frame.

    >>> sample_indices(16, 4), sample_indices(2, 4)
    ([2, 6, 10, 14], [0, 1, 1, 1])
    """
    if n <= 0:
        raise ValueError("a clip needs at least one frame")
    if n < k:
        return list(range(n)) + [n - 1] * (k - n)
    edges = np.linspace(0, n, k + 1)
    rng = rng or random.Random(0)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        lo, hi = int(np.ceil(a)), max(int(np.ceil(a)) + 1, int(np.ceil(b)))
        out.append(rng.randrange(lo, hi) if train else min(n - 1, int((a + b) / 2)))
    return out


_CASCADE = None


def face_box(frames: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest Haar-cascade face (x, y, w, h) in the middle frame, grown by 20 %; None if no face."""
    import cv2

    global _CASCADE
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    grey = cv2.cvtColor(frames[len(frames) // 2], cv2.COLOR_RGB2GRAY)
    faces = _CASCADE.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    H, W = grey.shape
    m = int(0.2 * max(w, h))
    return max(0, x - m), max(0, y - m), min(W, x + w + m) - max(0, x - m), min(H, y + h + m) - max(0, y - m)


# ============================================================================ audio features
@functools.lru_cache(maxsize=4)
def _mel_filters(n_fft: int = 400, n_mels: int = 64, sr: int = SR) -> np.ndarray:
    """Triangular filters on the mel scale m = 2595 log10(1 + f / 700), shape (n_mels, n_fft // 2 + 1)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = 700 * (10 ** (np.linspace(mel(0), mel(sr / 2), n_mels + 2) / 2595) - 1)
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, c, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    return np.maximum(0, np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c))).astype(np.float32)


def log_mel(audio: np.ndarray | None, n_fft: int = 400, hop: int = 160, n_mels: int = 64) -> np.ndarray:
    """(n_mels, frames) log-mel power in dB relative to full scale: 25 ms Hann windows, 10 ms hop, 64 mels.
    A missing or silent track gives the floor value (-100 dB) everywhere."""
    if audio is None or len(audio) < n_fft:
        return np.full((n_mels, 1), -100.0, np.float32)
    win = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(audio, np.float32), n_fft)[::hop]  # (T, n_fft)
    spec = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2 / (win.sum() ** 2 / 4)  # full-scale sine -> 0 dB
    mel = (spec.astype(np.float64) @ _mel_filters(n_fft, n_mels).T.astype(np.float64)).T  # float64: no denormals
    return (10 * np.log10(mel + 1e-10)).clip(-100, 20).astype(np.float32)


def spectrogram_image(mel_db: np.ndarray, size: int, floor_db: float = -80.0):
    """Square RGB PIL image of a log-mel (low frequencies at the bottom), fixed scale [floor_db, 0] dB so
    loudness stays visible."""
    import cv2
    from PIL import Image

    grey = ((np.clip(mel_db, floor_db, 0) - floor_db) / -floor_db * 255).astype(np.uint8)[::-1]
    grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def prosody(audio: np.ndarray | None, sr: int = SR) -> str:
    """Short words for pitch (autocorrelation f0, level and contour), loudness (RMS dBFS) and tempo
    (energy peaks per second), e.g. ``"pitch high rising, voice loud, tempo fast"``."""
    if audio is None or len(audio) < sr // 10 or np.abs(audio).max() < 1e-4:
        return "no audio"
    hop, win = sr // 100, sr // 25
    frames = np.lib.stride_tricks.sliding_window_view(audio, win)[::hop]
    energy = np.sqrt((frames ** 2).mean(1))
    voiced = energy > 0.3 * energy.max()
    x = frames[voiced] - frames[voiced].mean(1, keepdims=True)
    spec = np.fft.rfft(x, 2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : win]
    lo, hi = sr // 500, sr // 70  # f0 in 70..500 Hz
    f0 = sr / (lo + ac[:, lo:hi].argmax(1))
    half = len(f0) // 2
    slope = np.median(f0[half:]) / max(1e-6, np.median(f0[:half])) if half else 1.0
    level = np.median(f0)
    db = 20 * np.log10(np.sqrt((audio ** 2).mean()) + 1e-9)
    rise = np.diff(voiced.astype(int)) > 0
    rate = rise.sum() / (len(audio) / sr)
    pitch = "high" if level > 260 else "low" if level < 140 else "mid"
    contour = "rising" if slope > 1.15 else "falling" if slope < 0.87 else "level"
    loud = "loud" if db > -16 else "soft" if db < -26 else "moderate"
    tempo = "fast" if rate > 4.5 else "slow" if rate < 2.5 else "steady"
    return f"pitch {pitch} {contour}, voice {loud}, tempo {tempo}"
