"""People's names in a call's words, by the phrases that introduce or address a person.

No model: support calls name people in a few set ways ("my name is Alex", "this is Morgan from
the security team", "Hello Daniel,", "Mrs Patel", "her husband, Tom"), and the ASR capitalises
names. A name found once is a name everywhere in the call ("thanks, Alex" later on). What this
misses: a name said with no such phrase, and names the ASR wrote in lower case.
"""

from __future__ import annotations

import re

# (cue words, lower case) -> a name may follow. Checked on the words right before a capitalised word.
_INTRODUCTIONS = (
    ("my", "name", "is"), ("name", "is"), ("name's",), ("names",), ("this", "is"), ("it's",), ("it", "is"),
    ("i'm",), ("i", "am"), ("call", "me"), ("speaking", "with"), ("speaking", "to"), ("talking", "to"),
    ("talking", "with"), ("ask", "for"), ("asked", "for"), ("under",), ("under", "the", "name"),
)
_HONORIFICS = {"mr", "mrs", "ms", "miss", "mister", "missus", "dr", "doctor", "mx"}
_RELATIONS = {"husband", "wife", "partner", "son", "daughter", "mother", "father", "mom", "mum", "dad",
              "brother", "sister", "friend", "colleague", "manager", "supervisor", "boss", "neighbour",
              "neighbor", "grandson", "granddaughter"}
# A name in address: the greeting or thanks, the name, then punctuation or the end of the turn.
# ("Okay, Great." and "Yes. Absolutely!" are why "okay", "yes" and the like are not among them.)
_ADDRESS_CUES = {"hello", "hi", "hey", "thanks", "thank", "bye", "goodbye", "dear", "morning", "afternoon",
                 "evening"}
_ADDRESS_AFTER_THANK = {"you"}  # "thank you, Sam."
# Capitalised words that are not names where the cues above put them.
_NOT_NAMES = {
    "i", "i'm", "i've", "i'll", "i'd", "ok", "okay", "the", "a", "an", "this", "that", "it", "it's", "and", "but",
    "so", "yes", "no", "yeah", "well", "oh", "hello", "hi", "hey", "thanks", "thank", "sorry", "please", "sure",
    "great", "just", "actually", "really", "not", "calling", "here", "there", "now", "what", "how", "why", "who",
    "we", "you", "he", "she", "they", "my", "your", "our", "his", "her", "their", "sir", "madam", "ma'am",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow",
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "christmas", "easter", "english", "spanish", "french", "customer", "support",
    "billing", "service", "services", "team", "department", "bank", "internet", "power", "energy", "insurance",
    "company", "account", "care", "help", "desk", "line", "mobile", "online", "technical", "tech", "sales",
    "inc", "ltd", "llc", "plc", "limited", "corp", "group", "store", "shop", "outdoor", "airlines", "airways",
} | _HONORIFICS
# Organisation words: a capitalised run holding one of these after "this is" is a company, not a person.
_ORGANISATION = {"bank", "internet", "power", "energy", "insurance", "company", "support", "billing",
                 "services", "service", "team", "department", "care", "inc", "ltd", "llc", "plc", "limited",
                 "corp", "group", "store", "shop", "outdoor", "airlines", "airways", "telecom", "mobile"}
_MAX_NAME_WORDS = 3  # "Mary Anne Smith"
# A question asking for a name ("May I have your full name, please?", "Who am I speaking with?"), and
# the longest reply to it read as an answer ("Yes, it is under Daniel Cooper.", "Maria Lopez.").
_NAME_QUESTION = re.compile(r"[^.!?]*(\bname\b|\bwho am i (speaking|talking)|\bwho is (calling|this))[^.!?]*\?", re.IGNORECASE)
_ANSWER_MAX_WORDS = 12
_NAME_SHAPE = re.compile(r"^[A-Z][a-zA-Z]*(?:['’-][A-Za-z]+)*$")  # Alex, McDonald, O'Brien, Anne-Marie
_EDGE = "\"'“”‘’()[]{}<>,.;:!?…*"
_PUNCT_AFTER = re.compile(r"[,.;:!?…]$")


def _core(text: str) -> str:
    core = text.strip().strip(_EDGE)
    return core[:-2] if core.endswith(("'s", "’s")) else core  # "Alex's account": the name is Alex


def _is_name_word(text: str) -> bool:
    core = _core(text)
    return bool(_NAME_SHAPE.match(core)) and core.lower() not in _NOT_NAMES and not core.isupper()


def _name_run(words: list[str], first: int, ends: list[bool]) -> int:
    """The last index of the name starting at ``first`` (surnames follow until punctuation)."""
    last = first
    while (
        last + 1 < len(words) and last - first + 1 < _MAX_NAME_WORDS and not ends[last]
        and not _PUNCT_AFTER.search(words[last].strip()) and _is_name_word(words[last + 1])
    ):
        last += 1
    return last


def _after_cue(lower: list[str], i: int) -> bool:
    return any(tuple(lower[i - len(cue):i]) == cue for cue in _INTRODUCTIONS if i >= len(cue))


def _answers_to_name_questions(words: list[str], ends: list[bool], speakers: list[str]) -> list[tuple[int, int]]:
    """Name-shaped words of a short reply, by another speaker, to a question asking for a name."""
    starts = [0] + [k + 1 for k, end in enumerate(ends[:-1]) if end]
    turns = [(a, b) for a, b in zip(starts, starts[1:] + [len(words)])]
    runs = []
    for (qa, qb), (ra, rb) in zip(turns, turns[1:]):
        if (speakers[qa] != speakers[ra] and rb - ra <= _ANSWER_MAX_WORDS
                and _NAME_QUESTION.search("".join(words[qa:qb]))):
            runs += [(k, k) for k in range(ra, rb) if _is_name_word(words[k])]
    return runs


def find_names(words: list[str], utterance_ends: list[bool], speakers: list[str]) -> list[tuple[int, int]]:
    """(first, last) word indices of each name in ``words`` (one call, in time order, with ASR's
    leading spaces; ``utterance_ends`` marks each utterance's last word, ``speakers`` its speaker)."""
    lower = [w.strip().strip(_EDGE).lower() for w in words]
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if not _is_name_word(words[i]):
            i += 1
            continue
        # A cue in another turn or the sentence before ("that's what it is. Nobody ...") does not reach.
        cued = i > 0 and not utterance_ends[i - 1] and not re.search(r"[.!?…]$", words[i - 1].strip())
        prev = lower[i - 1] if cued else ""
        last = _name_run(words, i, utterance_ends)
        named = cued and (
            _after_cue(lower, i)
            or prev in _HONORIFICS
            or prev in _RELATIONS
            # Addressed: "Hello Daniel," / "thank you, Sam.": punctuation or the turn's end follows.
            or ((prev in _ADDRESS_CUES or (prev in _ADDRESS_AFTER_THANK and i > 1 and lower[i - 2] == "thank"))
                and (utterance_ends[last] or bool(_PUNCT_AFTER.search(words[last].strip()))))
        )
        # Addressed at the end of a sentence: "thank you for your patience, Daniel." / "I see, Maria?"
        named = named or (i > 0 and not utterance_ends[i - 1] and words[i - 1].strip().endswith(",")
                          and (utterance_ends[last] or bool(re.search(r"[.!?…]$", words[last].strip()))))
        if named and any(lower[k] in _ORGANISATION for k in range(i, min(len(words), last + 2))):
            named = False  # "this is Blue Sky Bank", "it's Summit Outdoor"
        if named:
            runs.append((i, last))
            i = last + 1
        else:
            i += 1  # a later word of the run may be named in its own right ("to Mrs O'Brien")
    runs += _answers_to_name_questions(words, utterance_ends, speakers)
    # A name found once is a name wherever the call says it.
    in_runs = {k for a, b in runs for k in range(a, b + 1)}
    found = {_core(words[k]) for k in in_runs}
    runs += [(k, k) for k, w in enumerate(words) if k not in in_runs and _is_name_word(w) and _core(w) in found]
    return sorted(set(runs))
