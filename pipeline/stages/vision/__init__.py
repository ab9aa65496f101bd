"""Stages that read video: the face branch (frames, faces, tracks, speaker links, expressions)."""
