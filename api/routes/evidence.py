"""Evidence images: a case's snapshot or photo by its place in the case, and photos uploaded to become evidence.

An image is found through the reference the stored case holds, never one a client names, so a reader sees
exactly the images of the cases in its scope.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from api.auth import Right
from api.deps import EngineDep, EvidenceDep, Reader, require
from api.photos import JPEG, PNG, check_photo, media_type
from storage.cases import SinkUnavailable, case_docs

router = APIRouter(prefix="/api/v1", tags=["evidence"])

#: Where handling photos go; a `handle` action takes only references under it.
PHOTOS_FOLDER = "photos"


class PhotoOut(BaseModel):
    """A stored photo."""

    photo: str = Field(description="its reference: pass it as `photo` of a `handle` action")


@router.get("/cases/{case_id}/evidence/{index}", response_class=Response, responses={
    200: {"content": {JPEG: {}, PNG: {}}, "description": "the image"},
    404: {"description": "no such case in the caller's scope, no such item, or the item has no image"},
})
def evidence_image(case_id: str, index: int, engine: EngineDep, caller: Reader, evidence: EvidenceDep) -> Response:
    """The image of the case's evidence item at `index` (0 for the first), as the case's evidence lists them."""
    try:
        doc = case_docs(engine, [case_id]).get(case_id)
    except SinkUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"case database unavailable: {exc}") from None
    if doc is None or not caller.covers(doc["grid_code"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id!r:.80}")
    items = doc["evidence"]
    if not 0 <= index < len(items):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"case {case_id} has {len(items)} evidence items (0 to {len(items) - 1}), not {index}")
    reference: str = items[index].get("ref", "")
    data = evidence.read(reference) if reference else None
    kind = media_type(data) if data else None
    if data is None or kind is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"evidence item {index} of case {case_id} has no image")
    # A reference names a file written once under a random or event name: it never changes, so it may be cached.
    return Response(data, media_type=kind,
                    headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})


@router.post("/photos", status_code=status.HTTP_201_CREATED, dependencies=[Depends(require(Right.ACT))],
             openapi_extra={"requestBody": {"required": True, "content": {JPEG: {}, PNG: {}}}}, responses={
                 413: {"description": "the photo is over the upload limit"},
                 415: {"description": "not a JPEG or PNG body, or not the type its Content-Type says"},
                 422: {"description": "empty, truncated, corrupt or too many pixels"},
             })
async def upload_photo(request: Request, evidence: EvidenceDep,
                       content_type: Annotated[str | None, Header()] = None) -> PhotoOut:
    """Store a handling photo (处置 feedback) sent as the raw body, for a later `handle` action."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in (JPEG, PNG):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the photo as the raw body with Content-Type {JPEG} or {PNG}, "
                            f"not {declared or 'none'!s:.60}")
    photo = await asyncio.to_thread(check_photo, await request.body())
    if photo.media_type != declared:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"the body is a {photo.media_type} image, but its Content-Type says {declared}")
    return PhotoOut(photo=await asyncio.to_thread(evidence.put_new, PHOTOS_FOLDER, photo.suffix, photo.data))
