"""What the synthetic calls say: the scripts, who says each line, and the backchannels.

A `Script` is one support dialogue in blocks (opening, complaint, a frustrated or a calm stretch,
a supervisor, a second customer voice, resolution, closing), so that a call can switch speakers and
the frustrated stretch on and off. `with_backchannels` lets the listener slip in an "Okay.".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

BACKCHANNELS = ("Okay.", "Right.", "I see.", "Sure.")


class Turn(NamedTuple):
    """A line as it was said: who, from when to when (seconds, ms precision), what."""

    speaker: str
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Line:
    role: str  # agent | customer | supervisor | customer2
    text: str
    angry: bool = False
    # (kind, value) of an identifier this line reads out, e.g. ("card", "4539148803436467").
    identifier: tuple[str, str] | None = None


@dataclass(frozen=True)
class Script:
    """One dialogue, in blocks so that speakers and the frustrated stretch can be switched."""

    name: str
    opening: tuple[Line, ...]
    complaint: tuple[Line, ...]
    # The customer's angry stretch; agent lines in it are short interjections only.
    frustrated: tuple[Line, ...]
    # Said instead of `frustrated` when the call is not frustrated.
    calm: tuple[Line, ...]
    # Used when n_speakers >= 3 (a supervisor joins) and == 4 (a second customer voice).
    supervisor: tuple[Line, ...]
    second_customer: tuple[Line, ...]
    resolution: tuple[Line, ...]
    closing: tuple[Line, ...]

    def lines(self, n_speakers: int, frustrated: bool, identify: tuple[Line, ...] = ()) -> list[Line]:
        """The call's lines; ``identify`` (details read out) goes right after the opening."""
        out = [*self.opening, *identify, *self.complaint]
        if n_speakers >= 4:
            out += self.second_customer
        out += self.frustrated if frustrated else self.calm
        if n_speakers >= 3:
            out += self.supervisor
        return out + [*self.resolution, *self.closing]


def _lines(*pairs: tuple[str, str] | tuple[str, str, bool]) -> tuple[Line, ...]:
    return tuple(Line(*p) for p in pairs)


A, C, S, C2 = "agent", "customer", "supervisor", "customer2"

# Plain words on purpose: no digits, titles or brand spellings that a recogniser may write
# differently, so WER on these calls measures the recogniser, not the normaliser.
SCRIPTS: tuple[Script, ...] = (
    Script(
        name="internet_outage",
        opening=_lines(
            (A, "Thank you for calling Bright Line Internet, my name is Alex. How can I help you today?"),
            (C, "Hi, my internet has been down since yesterday morning, and I work from home."),
            (A, "I am sorry to hear that. Can I have the name on the account, please?"),
            (C, "Yes, it is under Daniel Cooper."),
        ),
        complaint=_lines(
            (A, "Thank you, Daniel. I can see that your modem is offline. Have you tried restarting it?"),
            (C, "Yes, I restarted it three times, and the lights keep flashing orange."),
            (A, "Okay. There is a known outage in your area, and our technicians are working on it."),
        ),
        frustrated=_lines(
            (C, "An outage? Nobody told me anything. This is ridiculous!", True),
            (A, "I understand."),
            (C, "I am furious. I lost a whole day of work, and this is the third time this month!", True),
            (A, "I am very sorry."),
            (C, "Sorry is not good enough. This is the worst service I have ever had, and I pay for it every month!", True),
        ),
        calm=_lines(
            (C, "I see. That explains it. I lost most of a day of work, so I hope it is fixed soon."),
            (A, "I completely understand."),
            (C, "Is there anything you can do about the lost time?"),
        ),
        supervisor=_lines(
            (A, "Let me bring in my supervisor, Morgan, who can help with a credit."),
            (S, "Hello Daniel, this is Morgan, the shift supervisor. I have read the notes on your account."),
            (C, "Thank you for joining."),
            (S, "I am adding a credit for the whole week to your next bill, and I have marked your line as a priority."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Emma, I am on the speaker as well. We both work from home, so this affects the two of us."),
            (A, "Thank you, Emma, that is good to know. I have added it to the notes."),
        ),
        resolution=_lines(
            (A, "The repair crew expects to restore your service by this evening."),
            (C, "Okay. Will I get a message when it is back?"),
            (A, "Yes, you will get a text message as soon as the line is up again."),
            (C, "All right, thank you."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with today?"),
            (C, "No, that is all."),
            (A, "Thank you for your patience, Daniel. Have a good evening."),
            (C, "You too, goodbye."),
        ),
    ),
    Script(
        name="billing_dispute",
        opening=_lines(
            (A, "Thank you for calling City Power customer care, my name is Jordan. How may I help you?"),
            (C, "Hello, I am calling about my latest bill. It is almost twice what I normally pay."),
            (A, "I can look into that for you. May I have your full name, please?"),
            (C, "Maria Lopez."),
        ),
        complaint=_lines(
            (A, "Thank you, Maria. I have your account open. Your bill shows an estimated reading for last month."),
            (C, "Estimated? Somebody came and read the meter two weeks ago."),
            (A, "I see. It looks like that reading was not entered in our system."),
        ),
        frustrated=_lines(
            (C, "So I am paying double because of your mistake? This is ridiculous!", True),
            (A, "I understand your concern."),
            (C, "No, you do not. I am furious. This is the second time you have overcharged me!", True),
            (A, "I apologize."),
            (C, "This is the worst service I have ever seen. I am sick of calling you every month!", True),
        ),
        calm=_lines(
            (C, "I see. So the bill is wrong because the reading was never entered."),
            (A, "Yes, that is right."),
            (C, "Can you correct it before the payment is due?"),
        ),
        supervisor=_lines(
            (A, "I am going to bring in my supervisor, Riley, who can approve a correction."),
            (S, "Hi Maria, this is Riley, I supervise the billing team. I have looked at your meter history."),
            (C, "Thank you for picking this up."),
            (S, "I have approved a corrected bill based on the actual reading, and removed the late fee."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is her husband, Tom. I am on the line too. We keep the bills together."),
            (A, "Hello Tom, thank you. I can speak with both of you."),
        ),
        resolution=_lines(
            (A, "Your new bill will be about half of the amount you saw, and it will arrive by email today."),
            (C, "Good. And I do not need to pay the old one?"),
            (A, "That is correct. The old bill has been cancelled."),
            (C, "Okay, thank you for fixing it."),
        ),
        closing=_lines(
            (A, "Is there anything else I can do for you today?"),
            (C, "No, that is everything."),
            (A, "Thank you for calling City Power, Maria. Have a nice day."),
            (C, "Thanks, you too."),
        ),
    ),
    Script(
        name="password_reset",
        opening=_lines(
            (A, "Thank you for calling Blue Sky Bank, my name is Sam. What can I do for you today?"),
            (C, "Hi, I am locked out of my online banking, and I need to pay a bill today."),
            (A, "I can help with that. Can you confirm your name and the city where you opened the account?"),
            (C, "Sure, it is Peter Walsh, and I opened it in Denver."),
        ),
        complaint=_lines(
            (A, "Thank you, Peter. I see the account was locked after several failed sign in attempts."),
            (C, "I tried to reset my password, but the code never arrives on my phone."),
            (A, "Let me check. It looks like the phone number on file is an old one."),
        ),
        frustrated=_lines(
            (C, "I updated that number months ago. This is ridiculous!", True),
            (A, "I hear you."),
            (C, "I am furious. I have been trying for two days, and now my bill will be late!", True),
            (A, "I am sorry about that."),
            (C, "This is the worst bank I have ever dealt with. Nothing ever works!", True),
        ),
        calm=_lines(
            (C, "Oh, I see. I thought I had updated that number a while ago."),
            (A, "It happens quite often."),
            (C, "Can we change it now, so the code comes to my new phone?"),
        ),
        supervisor=_lines(
            (A, "I will ask my supervisor, Casey, to confirm the change, because it is a security update."),
            (S, "Hello Peter, this is Casey from the security team. I have verified your identity."),
            (C, "Okay, thank you."),
            (S, "Your new phone number is saved, and I have waived any late fee on today's bill."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Anna, his partner. The account is in both our names, and I am locked out too."),
            (A, "Thank you, Anna. The reset will work for both of you."),
        ),
        resolution=_lines(
            (A, "I have sent a new code to your phone. Can you read it back to me when it arrives?"),
            (C, "Yes, it just arrived. It is working now."),
            (A, "Great. Please choose a new password, and you can sign in right away."),
            (C, "Done. I can see my account again."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with?"),
            (C, "No, that was it."),
            (A, "Thank you for banking with Blue Sky, Peter. Have a good day."),
            (C, "Thanks, bye."),
        ),
    ),
    Script(
        name="delivery_delay",
        opening=_lines(
            (A, "Thank you for calling Summit Outdoor, my name is Taylor. How can I help you?"),
            (C, "Hi, I ordered a tent three weeks ago, and it still has not arrived."),
            (A, "I am sorry for the wait. Could I have the name on the order, please?"),
            (C, "It is under Grace Miller."),
        ),
        complaint=_lines(
            (A, "Thank you, Grace. I can see that your order left our warehouse, but the tracking stopped last week."),
            (C, "The website keeps saying it is on the way, but nothing changes."),
            (A, "It looks like the parcel was delayed at the carrier's depot."),
        ),
        frustrated=_lines(
            (C, "Delayed? We leave for our camping trip on Friday. This is ridiculous!", True),
            (A, "I understand."),
            (C, "I am furious. I paid extra for fast shipping, and nobody told me anything!", True),
            (A, "I am really sorry."),
            (C, "This is the worst service I have ever had. I want my money back!", True),
        ),
        calm=_lines(
            (C, "I see. We leave for our camping trip on Friday, so I am a bit worried."),
            (A, "That is completely fair."),
            (C, "Is there any way to get it before then?"),
        ),
        supervisor=_lines(
            (A, "Let me bring in my supervisor, Jamie, who can arrange a new shipment."),
            (S, "Hi Grace, this is Jamie, I manage our shipping team. I have read what happened."),
            (C, "Thank you for helping."),
            (S, "I am sending a new tent today by express delivery, and refunding your shipping cost."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Ben, her brother. The trip is my idea, so I am listening in."),
            (A, "Hello Ben, thanks for joining. We will get this sorted out."),
        ),
        resolution=_lines(
            (A, "The new parcel will arrive on Thursday, before your trip."),
            (C, "And what about the first one?"),
            (A, "If it arrives, you can refuse it, and it will come back to us at no cost."),
            (C, "Okay, that works. Thank you."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with today?"),
            (C, "No, that is all, thanks."),
            (A, "Enjoy your camping trip, Grace. Goodbye."),
            (C, "Thank you, goodbye."),
        ),
    ),
)
SCRIPTS_BY_NAME = {s.name: s for s in SCRIPTS}


def _split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def with_backchannels(lines: list[Line], rng: np.random.Generator) -> list[Line]:
    """Split some calm multi-sentence lines so the listener can slip in a backchannel."""
    out: list[Line] = []
    for i, line in enumerate(lines):
        sentences = _split_sentences(line.text)
        listener = lines[i - 1].role if i > 0 else None
        if (not line.angry and line.identifier is None and len(sentences) >= 2
                and listener not in (None, line.role) and rng.random() < 0.3):
            cut = int(rng.integers(1, len(sentences)))
            out.append(Line(line.role, " ".join(sentences[:cut])))
            out.append(Line(listener, str(rng.choice(BACKCHANNELS))))
            out.append(Line(line.role, " ".join(sentences[cut:])))
        else:
            out.append(line)
    return out
