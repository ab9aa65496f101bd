"""Conversation metrics QA teams know from contact-centre analytics: talk time and share per
speaker, non-talk time, overlap, interruptions and talk speed.

An interruption is counted when a speaker starts talking while another speaker's turn is under
way and that turn goes on for at least ``min_overlap_s`` after the start (a short backchannel
at the very end of a turn is not an interruption).
"""

from __future__ import annotations

from pipeline.records import CallMetrics, SpeakerMetrics, Utterance
from pipeline.stages import contract


from pyannote.core import Annotation



def conversation_metrics(
    turns: Annotation, utterances: list[Utterance], duration_s: float, min_overlap_s: float = 0.5
) -> CallMetrics:
    speakers = sorted(turns.labels())
    talk = {s: turns.label_timeline(s).support().duration() for s in speakers}
    total_talk = sum(talk.values())
    words: dict[str, int] = {s: 0 for s in speakers}
    for u in utterances:
        if u.speaker in words:
            words[u.speaker] += len(u.words)

    made = {s: 0 for s in speakers}
    received = {s: 0 for s in speakers}
    tracks = sorted(((seg, label) for seg, _, label in turns.itertracks(yield_label=True)), key=lambda t: t[0].start)
    for seg, label in tracks:
        for other_seg, other in tracks:
            if other == label or other_seg.start >= seg.start:
                continue
            if other_seg.end - seg.start >= min_overlap_s:  # the other was mid-turn, and went on
                made[label] += 1
                received[other] += 1
                break

    rows = []
    for s in speakers:
        monologues = turns.label_timeline(s).support()
        rows.append(
            SpeakerMetrics(
                speaker=s,
                talk_s=round(talk[s], 3),
                talk_share=round(talk[s] / total_talk, 4) if total_talk else 0.0,
                n_turns=len(monologues),
                n_words=words[s],
                words_per_minute=round(words[s] / (talk[s] / 60.0), 1) if words[s] and talk[s] > 0 else None,
                interruptions_made=made[s],
                interruptions_received=received[s],
                longest_monologue_s=round(max((seg.duration for seg in monologues), default=0.0), 3),
            )
        )
    spoken = turns.get_timeline().support().duration()
    return CallMetrics(
        non_talk_s=round(max(0.0, duration_s - spoken), 3),
        overlap_s=round(turns.get_overlap().duration(), 3),
        speakers=rows,
    )


STAGE = contract.Stage("conversation", backend=contract.fixed("python"), run=conversation_metrics)
