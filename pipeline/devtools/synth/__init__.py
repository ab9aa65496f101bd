"""Synthetic support calls with a known truth: demo recordings and test data.

A scripted agent and customer (optionally a supervisor and a second customer voice) are spoken by
espeak-ng with MBROLA voices, one subprocess per utterance, laid on a timeline with natural gaps,
sent through a telephone channel (8 kHz, 300-3400 Hz, μ-law) and mixed with noise at a requested
SNR. Next to the audio go the truth files: RTTM (who spoke when), STM (what was said) and a
metadata JSON (roles, consent) in the shape the pipeline reads.

Variants for evaluation: stereo (the agent alone on channel 0, everyone else on channel 1, as
contact-centre recorders store the two legs of a call), planted identifiers (the customer reads
out a card number, a phone number, an e-mail address and a date of birth; what was planted is
written to ``<call_id>.pii.json`` so a redaction check knows what must not survive), a long call
(any number of minutes, written block by block in bounded memory) and a test set over speaker
count, SNR, channels and overlap, optionally with stereo calls whose customer is 0-10 dB
quieter than the agent.

The customer's frustrated stretch is angry in words *and* in voice (faster, higher, louder), so
both text valence and voice arousal cues have something real to find.

Everything is deterministic for a seed: the truth always, and the bytes too (espeak-ng, numpy's
seeded generator and ffmpeg's bitexact flags are all deterministic).

The modules, from what is said to what is written:

- `dialogue`: the scripts (`Script`, `Line`, `Turn`) and the listener's backchannels;
- `identifiers`: the details a customer reads out, and `PlantedIdentifier`;
- `voices`: espeak-ng voices per role, one utterance at a time;
- `signal_chain`: phone line, channel levels, background noise;
- `call_files`: the audio file, the truth (RTTM, STM, ``.pii.json``) and the metadata JSON;
- `calls`: one call, `render_call` (in memory) and `generate_call` (written);
- `long_call`: `generate_long_call`, any number of minutes in bounded memory;
- `call_sets`: `generate_demo_set` and the evaluation `generate_test_set`;
- `bad_inputs`: `write_bad_inputs`, files the pipeline must quarantine.
"""
