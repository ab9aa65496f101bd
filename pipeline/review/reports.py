"""The leads' pages for the nightly trend reports (pipeline.jobs.trend_report): the list, newest
first, and one report, served as the page the job wrote under the curated root."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from pipeline.jobs.trend_report import REPORTS, WINDOW_DAYS, report_key
from pipeline.review.auth import User, require

router = APIRouter()
_REPORT_KEY = re.compile(re.escape(REPORTS) + r"/(\d{4}-\d{2}-\d{2})/index\.html")
# The report is self-contained (inline SVG and styles, no script): the browser may load nothing else.
_REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


@router.get("/reports", response_class=HTMLResponse)
def report_list(request: Request, user: Annotated[User, Depends(require("lead"))]):
    keys = request.app.state.curated.list(REPORTS + "/")
    days = sorted((m.group(1) for m in map(_REPORT_KEY.fullmatch, keys) if m), reverse=True)
    context = {"user": user, "days": days, "window_days": WINDOW_DAYS}
    return request.app.state.templates.TemplateResponse(request, "reports.html", context)


@router.get("/reports/{day}", response_class=HTMLResponse)
def report(request: Request, day: str, user: Annotated[User, Depends(require("lead"))]):
    # Checked here, after the role: an anonymous request is sent to the login page whatever its day.
    try:
        key = report_key(day)
    except ValueError:
        raise HTTPException(status_code=400, detail="not a day in the form YYYY-MM-DD") from None
    page = request.app.state.curated.read_bytes(key)
    if page is None:
        raise HTTPException(status_code=404, detail=f"no trend report for {day}")
    return HTMLResponse(page, headers={"Cache-Control": "private, no-store", "Content-Security-Policy": _REPORT_CSP})
