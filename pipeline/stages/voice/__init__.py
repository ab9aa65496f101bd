"""Stages that read the voice: prosody features and arousal."""
