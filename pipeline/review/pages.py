"""The reviewer's pages: the queue, a call, its snippet, verdicts, notes, assignments, users."""

from __future__ import annotations

import functools
import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from pipeline.review import plots
from pipeline.review.auth import User, current_user, require
from pipeline.review.marts_reader import REVIEW_STATUSES, TRENDS, QueueFilter
from pipeline.review.review_state import ReviewState
from pipeline.storage.keys import valid_call_id

router = APIRouter()
CALL_ID = Annotated[str, Path(max_length=128)]
FLAG_ID = Annotated[str, Path(max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}$")]  # as the review store
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
VERDICTS = ("confirmed", "dismissed", "unsure")


def _page(request: Request, template: str, context: dict, user: User) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, template, {"user": user, **context})


def _call_or_404(request: Request, call_id: str) -> dict:
    call = request.app.state.marts.call(call_id) if valid_call_id(call_id) else None
    if call is None:
        raise HTTPException(status_code=404, detail="no such call in the marts")
    return call


@router.get("/", include_in_schema=False)
def home(user: Annotated[User, Depends(current_user)]):
    return RedirectResponse("/queue", status_code=303)


class QueueQuery(BaseModel):
    """The queue's filters, each checked: a bad value is a 400, never a query."""

    date_from: date | None = None
    date_to: date | None = None
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    status: str | None = Field(None, pattern="^(" + "|".join(REVIEW_STATUSES) + ")$")
    rule_version: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    agent_id: str | None = Field(None, pattern=NAME)
    queue: str | None = Field(None, pattern=NAME)
    trend: str | None = Field(None, pattern="^(" + "|".join(TRENDS) + ")$")
    mine: bool = False
    page: int = Field(1, ge=1, le=100_000)


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, user: Annotated[User, Depends(require("reviewer"))], q: Annotated[QueueQuery, Query()]):
    state: ReviewState = request.app.state.review_state
    flag_ids = state.flags_with_status(q.status) if q.status and q.status != "unreviewed" else None
    if q.mine:
        mine = state.assigned_to(user.username)
        flag_ids = mine & flag_ids if flag_ids is not None else mine
    # The marts know no verdicts: the review status filters by flag id, from the review record.
    reviewed = frozenset(state.reviewed_flags()) if q.status == "unreviewed" else frozenset()
    f = QueueFilter(q.date_from, q.date_to, q.min_score, q.min_confidence, q.rule_version, q.agent_id, q.queue, q.trend,
                    frozenset(flag_ids) if flag_ids is not None else None, reviewed, q.page,
                    request.app.state.settings.review.page_size)
    rows, total = request.app.state.marts.queue(f)
    for r in rows:
        r["status"] = state.status(r["flag_id"])
        r["assignee"] = state.assignee(r["flag_id"])
    args = {k: v for k, v in request.query_params.items() if k != "page"}
    return _page(request, "queue.html", {
        "rows": rows, "total": total, "page": q.page, "page_size": f.page_size, "args": args,
        "rule_versions": request.app.state.marts.rule_versions(), "statuses": REVIEW_STATUSES, "trends": TRENDS,
    }, user)


@router.get("/calls/{call_id}", response_class=HTMLResponse)
def call_view(request: Request, call_id: CALL_ID, user: Annotated[User, Depends(require("reviewer"))],
              flag: Annotated[str | None, Query(max_length=200)] = None):
    call = _call_or_404(request, call_id)
    marts, state = request.app.state.marts, request.app.state.review_state
    flags = marts.flags(call_id)
    focus = next((f for f in flags if f["flag_id"] == flag), flags[0] if flags else None)
    affect = marts.affect(call_id)
    state.log_view(user.username, call_id)
    for f in flags:
        f["status"] = state.status(f["flag_id"])
        f["verdicts"] = state.verdicts_of(f["flag_id"])
    return _page(request, "call.html", {
        "call": call, "flags": flags, "focus": focus, "utterances": marts.utterances(call_id),
        "conversation": marts.conversation(call_id), "quarters": marts.quarters(call_id),
        "cues": _cues(affect, focus),
        "notes": state.notes_of(call), "verdict_choices": VERDICTS,
        # Where the focus flag's snippet starts in the call: cut with the configured padding.
        "snippet_start": max(0.0, focus["start_s"] - request.app.state.settings.snippets.pad_s) if focus else 0.0,
    }, user)


def _cues(affect: list[dict], focus: dict | None) -> list[dict]:
    """Which cues fired over the flagged span, and how sure each was (mean over its windows)."""
    if focus is None:
        return []
    inside = [a for a in affect if a["speaker"] == focus["speaker"] and a["start_s"] < focus["end_s"] and a["end_s"] > focus["start_s"]]
    cues = []
    for name, key in (("text valence", "text_valence"), ("voice arousal", "voice_arousal"), ("face valence", "face_valence")):
        values = [a[key] for a in inside if a[key] is not None]
        cues.append({"cue": name, "windows": len(values), "mean": sum(values) / len(values) if values else None,
                     "confidence": sum(a["confidence"] for a in inside) / len(inside) if values and inside else None})
    return cues


@router.get("/calls/{call_id}/plot.svg")
def call_plot(request: Request, call_id: CALL_ID, user: Annotated[User, Depends(require("reviewer"))]):
    """The call's affect plot, an image the call view loads after its text: drawing it costs
    more than the rest of the page, and it changes only when the marts do (cached per file)."""
    call = _call_or_404(request, call_id)
    marts = request.app.state.marts
    svg = _plot(marts, call_id, marts.identity(), call["duration_s"])
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=300"})


@functools.lru_cache(maxsize=256)
def _plot(marts, call_id: str, identity: tuple[int, int], duration_s: float) -> str:
    return plots.affect_svg(marts.affect(call_id), marts.flags(call_id), duration_s)


@router.get("/calls/{call_id}/flags/{flag_id}/snippet.ogg")
def snippet(request: Request, call_id: CALL_ID, flag_id: FLAG_ID, user: Annotated[User, Depends(require("reviewer"))]):
    flag = request.app.state.marts.flag(flag_id)
    if flag is None or flag["call_id"] != call_id:
        raise HTTPException(status_code=404, detail="no such flag in this call")
    key = flag.get("snippet_key")
    data = request.app.state.curated.read_bytes(key) if key else None
    if data is None:
        raise HTTPException(status_code=404, detail="no snippet for this flag (no voice consent, or none kept)")
    return _ranged(request, data, "audio/ogg")


def _ranged(request: Request, data: bytes, media_type: str) -> Response:
    """The bytes, or the one range asked for (the audio element seeks with Range requests)."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
    if not wanted or not (wanted.group(1) or wanted.group(2)):
        return Response(data, media_type=media_type, headers=headers)
    size = len(data)
    if wanted.group(1):
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)), size - 1) if wanted.group(2) else size - 1
    else:
        start, end = max(0, size - int(wanted.group(2))), size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(data[start:end + 1], status_code=206, media_type=media_type, headers=headers)


@router.post("/flags/{flag_id}/verdict")
def give_verdict(request: Request, flag_id: FLAG_ID, user: Annotated[User, Depends(require("reviewer"))],
                 verdict: Annotated[str, Form(pattern="^(" + "|".join(VERDICTS) + ")$")],
                 comment: Annotated[str, Form(max_length=2000)] = ""):
    flag = request.app.state.marts.flag(flag_id)
    if flag is None:
        raise HTTPException(status_code=404, detail="no such flag in the marts")
    request.app.state.review_state.add_verdict(flag, user.username, verdict, comment)
    return RedirectResponse(f"/calls/{flag['call_id']}?flag={flag_id}", status_code=303)


@router.post("/calls/{call_id}/notes")
def add_note(request: Request, call_id: CALL_ID, user: Annotated[User, Depends(require("reviewer"))],
             utterance_id: Annotated[int, Form(ge=0, le=1_000_000)], text: Annotated[str, Form(min_length=1, max_length=2000)]):
    call = _call_or_404(request, call_id)
    request.app.state.review_state.add_note(call, utterance_id, user.username, text)
    return RedirectResponse(f"/calls/{call_id}#u{utterance_id}", status_code=303)


@router.post("/flags/{flag_id}/assign")
def assign(request: Request, flag_id: FLAG_ID, user: Annotated[User, Depends(require("lead"))],
           reviewer: Annotated[str, Form(pattern=NAME)]):
    flag = request.app.state.marts.flag(flag_id)
    if flag is None:
        raise HTTPException(status_code=404, detail="no such flag in the marts")
    if request.app.state.accounts.get(reviewer) is None:
        raise HTTPException(status_code=400, detail="no such reviewer")
    request.app.state.review_state.assign(flag, reviewer, user.username)
    return RedirectResponse("/queue", status_code=303)


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, user: Annotated[User, Depends(require("admin"))]):
    return _page(request, "users.html", {"accounts": request.app.state.store.list_accounts()}, user)
