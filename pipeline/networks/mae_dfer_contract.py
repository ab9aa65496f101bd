"""What MAE-DFER's weights expect and give: class order, input normalisation, clip geometry.

Shared by the network definition (pipeline.networks.lgi_former) and the stage that runs it
(pipeline.stages.vision.face_expression_clips), so neither imports the other.
"""

from __future__ import annotations

# DFEW's label order: labels 1..7 of DFEW's EmoLabel_DataSplit files, which the authors'
# preprocess/dfew.py (github.com/sunlicai/MAE-DFER) shifts to 0..6; their repository names no
# classes, the names are DFEW's (Jiang et al., ACM MM 2020).
CLASSES: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

# The authors' input normalisation (kinetics.py, VideoClsDatasetFrame, test mode): RGB scaled
# to [0, 1], then ImageNet's mean and std per channel.
INPUT_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
INPUT_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The authors' clip: 16 frames (every 4th frame of the source, --sampling_rate 4), each frame
# resized to 160x160 (aspect ratio not kept: Resize(size=(160, 160)) in test mode).
CLIP_FRAMES = 16
CLIP_SIZE = 160
