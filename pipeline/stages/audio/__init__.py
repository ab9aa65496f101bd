"""Stages that read audio: channel layout, speech activity, diarization, transcription."""
