"""Stages that read the transcript: attribution, PII redaction, roles, conversation metrics, text affect."""
