"""Developer tooling: synthetic calls and video, evaluation (DER/WER), the demo and the local S3 server."""
