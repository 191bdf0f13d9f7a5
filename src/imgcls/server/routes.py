"""HTTP routes: classify, models, labels, health, readiness, metrics.

The classify path, per request: guards (security.py) -> parameters -> readiness -> a share of
the upload byte budget -> stream the body (uploads.py) -> room for its n images in the model's
queue (both waited for in line when the server is busy: waitline.py) -> decode and
preprocess each on the decode threads -> micro-batched model call (batcher.py) -> top-k. Results
keep upload order; a file that fails gets its own error entry and the others still succeed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from imgcls.choices import Lang, Precision
from imgcls.errors import ImgclsError
from imgcls.preprocess import thumbnail_jpeg
from imgcls.server.config import MAX_TOP_K
from imgcls.server.http_errors import error_headers, error_response
from imgcls.server.uploads import Upload, UploadLimits, read_uploads

__all__ = ["router"]

log = logging.getLogger("imgcls.server")
router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}


# -- schemas for the OpenAPI document (responses are built as dicts, not validated twice) -----
class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class TopEntry(BaseModel):
    class_index: int
    label: str
    score: float


class FileResult(BaseModel):
    filename: str
    top: Optional[list[TopEntry]] = None
    input: Optional[dict] = None
    timing_ms: Optional[dict[str, float]] = None
    preview: Optional[str] = None  # with ?preview=N: the decoded, upright image as a small JPEG data URL
    error: Optional[ErrorBody] = None
    status: Optional[int] = None


class ClassifyResponse(BaseModel):
    model: str
    precision: str
    lang: str
    results: list[FileResult]


class ModelInfo(BaseModel):
    name: str
    title: str
    source: str
    architecture: str
    num_classes: int
    languages: list[str]
    precisions: list[str]
    default_precision: str
    runtime: str = Field(description="onnxruntime, or openvino (after `imgcls models verify-openvino`)")
    default: bool
    loaded: bool
    ready: bool
    preprocessing: str
    preprocessing_values: dict
    max_top_k: int


class Limits(BaseModel):
    max_upload_mb: float
    max_upload_bytes: int
    max_files: int
    max_pixels: int
    max_top_k: int
    body_timeout_s: float


class ModelsResponse(BaseModel):
    default: str
    default_precision: str = Field(description="The default model's default precision (each model's is in models)")
    ready: bool
    models: list[ModelInfo]
    limits: Limits


class LabelsResponse(BaseModel):
    model: str
    lang: str
    labels: list[str]


class StatusResponse(BaseModel):
    status: str


MAX_PREVIEW_PX = 512
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 408, 413, 415, 421, 422, 503)}
MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                                        "description": "One or more images (JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF, HEIC, JPEG 2000)."}},
            }},
            # One image as the whole body (curl --data-binary, most load generators).
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _state(request: Request):
    return request.app.state.imgcls


@router.post("/api/v1/classify", tags=["classify"], response_model=None, openapi_extra=MULTIPART_BODY,
             responses={200: {"model": ClassifyResponse}, **ERRORS}, summary="Classify one or more images")
async def classify(
    request: Request,
    model: Optional[str] = Query(None, max_length=200, description="A served model (default: the first one)."),
    top_k: int = Query(5, ge=1, le=MAX_TOP_K, description="How many classes per image."),
    lang: Lang = Query(Lang.en, description="Label language (models without Chinese names answer in English)."),
    precision: Optional[Precision] = Query(None, description="fp32 or int8 (default: the server's)."),
    preview: int = Query(0, ge=0, le=MAX_PREVIEW_PX, description=(
        "Also return each image, decoded and upright, as a JPEG data URL at most this many pixels on its "
        "longer side (0 = none): a thumbnail for clients that cannot show the original format (browsers "
        "cannot show HEIC, TIFF or JPEG 2000).")),
):
    """Multipart upload with one or more parts named `file`, or one image as the raw body
    (`Content-Type: image/*` or `application/octet-stream`). Results come back in upload order;
    a file that cannot be classified gets an `error` and `status` of its own. A request with a
    single file that fails answers with that file's status instead of 200."""
    state = _state(request)
    state.check_ready()
    served = state.registry.get(model, precision.value if precision else None)
    await served.ensure_loaded()  # a non-default precision loads on its first request
    info = request.scope.get("imgcls", {})
    info["model"] = served.name
    lang_used = served.slot.spec.label_language(lang.value)
    # Busy: wait in line (first for the bytes of the body, then, body read, for room in the queue),
    # 503 after --queue-timeout seconds of waiting. Nobody holds queue room while uploading.
    patience = state.config.queue_timeout_s
    with state.upload_budget.lease() as lease:
        uploads = await read_uploads(request.receive, request.headers.get("content-type"), _content_length(request),
                                     state.upload_limits, lease, patience)
        info["n_files"] = len(uploads)
        deadline = asyncio.get_running_loop().time() + patience - lease.waited_s
        async with served.batcher.admission(len(uploads), deadline):
            results = await asyncio.gather(*(_classify_one(state, served, up, top_k, lang_used, preview)
                                             for up in uploads))
    if len(results) == 1 and "error" in results[0]:
        error = results[0]["error"]
        return error_response(results[0]["status"], error["code"], error["message"])
    return JSONResponse({"model": served.name, "precision": served.precision, "lang": lang_used, "results": results},
                        headers=NO_STORE)


async def _classify_one(state, served, upload: Upload, top_k: int, lang: str, preview_px: int) -> dict:
    started = time.perf_counter()
    classifier = served.classifier
    data, upload.data = upload.data, b""  # drop the request's copy as soon as it is decoded
    try:
        array, report, decode_ms, preview = await asyncio.get_running_loop().run_in_executor(
            state.decode_pool, _prepare, classifier, data, preview_px, served.record_cpu)
        del data
        result = await served.batcher.submit(array)
    except ImgclsError as exc:
        state.metrics.errors.labels(exc.code).inc()
        state.metrics.images.labels(served.name, served.precision, exc.code).inc()
        return {"filename": upload.filename, "error": exc.to_dict(), "status": exc.http_status}
    except Exception:  # a bug must cost one file, not the request, and never leak details
        log.error("classifying one file failed", exc_info=True)
        state.metrics.errors.labels("internal_error").inc()
        return {"filename": upload.filename, "status": 500,
                "error": {"code": "internal_error", "message": "This file could not be classified (server error)."}}
    state.metrics.images.labels(served.name, served.precision, "ok").inc()
    cpu = time.thread_time()
    top = classifier.format_top(result.probabilities, top_k, lang)
    served.record_cpu("top_k", time.thread_time() - cpu)
    answer = {
        "filename": upload.filename,
        "top": top,
        "input": report,
        "timing_ms": {"decode": decode_ms, "queue": result.queue_ms, "model": result.model_ms,
                      "total": round((time.perf_counter() - started) * 1000, 2)},
    }
    if preview:
        answer["preview"] = preview
    return answer


def _prepare(classifier, data: bytes, preview_px: int, record_cpu):
    started, cpu0 = time.perf_counter(), time.thread_time()
    decoded = classifier.decode(data)
    cpu1 = time.thread_time()
    array = classifier.to_array(decoded.image)
    cpu2 = time.thread_time()
    decode_ms = round((time.perf_counter() - started) * 1000, 2)  # the preview is not part of the decode
    record_cpu("decode", cpu1 - cpu0)
    record_cpu("preprocess", cpu2 - cpu1)
    preview = None
    if preview_px:
        thumbnail = thumbnail_jpeg(decoded.image, preview_px)
        preview = "data:image/jpeg;base64," + base64.b64encode(thumbnail).decode("ascii")
    return array, decoded.report.to_dict(), decode_ms, preview


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


@router.get("/api/v1/models", tags=["models"], summary="Served models, defaults and limits", response_model=None,
            responses={200: {"model": ModelsResponse}, 401: {"model": ErrorResponse}})
async def models(request: Request):
    """The models this server serves (the first is the default), their precisions, label
    languages and preprocessing in words, plus the upload limits."""
    state = _state(request)
    return JSONResponse({
        "default": state.registry.default_name,
        # The default model's: with --precision auto each model has its own (see "models").
        "default_precision": state.registry.slots[state.registry.default_name].default_precision,
        "ready": state.lifecycle.ready,
        "models": state.registry.describe(state.lifecycle.ready),
        "limits": state.limits(),
    }, headers=NO_STORE)


@router.get("/api/v1/labels", tags=["models"], summary="The label list of a served model", response_model=None,
            responses={200: {"model": LabelsResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                       422: {"model": ErrorResponse}})
async def labels(request: Request, model: Optional[str] = Query(None, max_length=200), lang: Lang = Query(Lang.en)):
    """Class names indexed by class index, in the requested language when the model has it
    (`lang` in the answer says which language was used)."""
    state = _state(request)
    served = state.registry.get(model, None)
    spec = served.slot.spec
    used = spec.label_language(lang.value)
    return JSONResponse({"model": spec.name, "lang": used, "labels": list(spec.labels(used))},
                        headers={"Cache-Control": "no-cache"})


@router.get("/healthz", tags=["health"], summary="Liveness", response_model=None,
            responses={200: {"model": StatusResponse}})
async def healthz():
    """200 whenever the process is alive (no API key needed)."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


@router.get("/readyz", tags=["health"], summary="Readiness", response_model=None,
            responses={200: {"model": StatusResponse}, 503: {"model": ErrorResponse}})
async def readyz(request: Request):
    """200 once every model is loaded and warmed; 503 while loading and while shutting down."""
    lifecycle = _state(request).lifecycle
    if lifecycle.state == "ready":
        return JSONResponse({"status": "ready"}, headers=NO_STORE)
    code = "shutting_down" if lifecycle.draining else "not_ready"
    message = {"loading": "The models are still loading.", "shutting_down": "The server is shutting down.",
               "failed": "The models could not be loaded."}[lifecycle.state]
    return JSONResponse({"status": lifecycle.state, "error": {"code": code, "message": message}}, status_code=503,
                        headers=error_headers(code))


@router.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                       401: {"model": ErrorResponse}})
async def metrics(request: Request):
    """Requests by route and status, latencies, batch sizes, queue depth, errors by code."""
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST,
                    headers=NO_STORE)


def make_limits(config) -> dict:
    return {
        "max_upload_mb": config.max_upload_mb,
        "max_upload_bytes": config.max_upload_bytes,
        "max_files": config.max_files,
        "max_pixels": config.max_pixels,
        "max_top_k": MAX_TOP_K,
        "body_timeout_s": config.body_timeout_s,
    }


def make_upload_limits(config) -> UploadLimits:
    return UploadLimits(max_bytes=config.max_upload_bytes, max_files=config.max_files,
                        deadline_s=config.body_timeout_s)
