"""Server configuration and model resolution, done before the process listens.

``ServerConfig`` holds every knob of ``imgcls serve`` (the CLI fills it from flags and
environment variables). ``resolve_models`` turns the configured model names into verified ONNX
artifacts up front, so a missing or corrupt artifact stops the server with one clear line
instead of serving garbage.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.artifacts import PRECISIONS, Builder, auto_precision, ensure_artifact, verified_artifacts
from imgcls.catalog import ModelSpec, default_model_name, resolve_model
from imgcls.errors import InputError, ModelError
from imgcls.preprocess import DEFAULT_MAX_PIXELS

__all__ = ["ServerConfig", "ModelSlot", "resolve_models", "is_loopback_host", "LOOPBACK_NAMES"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_TOP_K = 50


@dataclass
class ServerConfig:
    """Everything ``imgcls serve`` can be told. Defaults suit a 2-core CPU box."""

    models: list[str] = field(default_factory=list)  # names or bundle folders; first = default; [] = catalogue default
    # Default precision of every served model. "auto": INT8 where the model has a verified INT8
    # artifact or ships a calibration table to build one (the embedded model does), else fp32.
    precision: str = "auto"
    runtime: str = "onnxruntime"  # or "openvino": artifacts need an OpenVINO verification record
    host: str = "127.0.0.1"  # loopback unless the operator explicitly says otherwise
    port: int = 8000
    # 4, not 8: with one ORT thread per call, batch 8 saves no CPU per image at concurrency 8 and
    # ~5% at 32, while two concurrent batch-8 calls hold ~45 MB more activations (Lite0 INT8 peak
    # RSS over 1,000 requests at concurrency 32: 212-219 vs 257-263 MB; docs/benchmarks.md).
    max_batch: int = 4  # images per model call
    max_wait_ms: float = 3.0  # longest wait for images already admitted and still decoding
    max_queue: int = 32  # images admitted (decoding, waiting or running) per model
    # Beyond max_queue (or the upload byte budget) a request waits in line this long before it gets
    # 503: more clients than the queue cost latency, not errors (0: answer 503 at once).
    queue_timeout_s: float = 10.0
    max_upload_mb: float = 20.0  # whole request body cap, enforced while reading
    max_files: int = 32  # file parts per request
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded image size cap, checked from the header
    # Throughput on few cores: one ORT thread per model call and one call per core beats one
    # call spread over all cores (no per-operator thread hand-offs; decode threads interleave).
    threads: int | None = 1  # ONNX Runtime intra-op threads per model call (None: all cores)
    # A lone request (nothing else admitted anywhere) is not competing for cores, so its model
    # call may use them all: Lite0 INT8 at concurrency 1 p50 ~23 -> ~18 ms for ~13 MB (a second
    # ONNX session). Equal to --threads turns it off.
    solo_threads: int | None = None  # threads for such a call (None: all cores)
    model_workers: int | None = None  # model calls that may run at once per model (None: one per core)
    decode_threads: int | None = None  # threads decoding/preprocessing uploads (default: cores)
    draft: bool = True  # decode large JPEGs at reduced scale (Classifier(draft=...)); False: every pixel
    api_key: str | None = None  # protects /api/* and /metrics when set
    allowed_hosts: list[str] = field(default_factory=list)  # extra Host names accepted (DNS-rebinding guard)
    body_timeout_s: float = 30.0  # an upload must arrive completely within this time (slow-client guard)
    max_connections: int = 1024  # open connections + requests in progress; beyond -> JSON 503 and close
    drain_seconds: float = 1.0  # after SIGTERM: answer 503 / not-ready this long before closing the listener
    graceful_timeout_s: float = 10.0  # then wait at most this long for in-flight requests
    log_level: str = "info"
    warmup_delay_s: float = 0.0  # test hook (IMGCLS_TEST_WARMUP_DELAY_S): hold readiness back this long

    @property
    def workers_per_model(self) -> int:
        return self.model_workers or available_cores()

    @property
    def solo_threads_or_cores(self) -> int:
        return self.solo_threads or available_cores()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def validate(self) -> None:
        """Raise InputError (exit 2) for values that make no sense, with the flag's name."""
        checks = [
            (self.precision in (*PRECISIONS, "auto"), "--precision must be auto, fp32 or int8."),
            (self.runtime in ("onnxruntime", "openvino"), "--runtime must be onnxruntime or openvino."),
            (0 <= self.port <= 65535, "--port must be between 0 and 65535."),
            (1 <= self.max_batch <= 256, "--max-batch must be between 1 and 256."),
            (0 <= self.max_wait_ms <= 1000, "--max-wait-ms must be between 0 and 1000."),
            (1 <= self.max_queue <= 100_000, "--max-queue must be between 1 and 100000."),
            (0 <= self.queue_timeout_s <= 3600, "--queue-timeout must be between 0 and 3600 seconds."),
            (0 < self.max_upload_mb <= 1024, "--max-upload-mb must be above 0 and at most 1024."),
            (1 <= self.max_files <= 1000, "--max-files must be between 1 and 1000."),
            (self.threads is None or 1 <= self.threads <= 256, "--threads must be between 1 and 256."),
            (self.solo_threads is None or 1 <= self.solo_threads <= 256, "--solo-threads must be between 1 and 256."),
            (self.model_workers is None or 1 <= self.model_workers <= 64, "--model-workers must be between 1 and 64."),
            (self.body_timeout_s > 0, "--body-timeout must be above 0 seconds."),
            (1 <= self.max_connections <= 100_000, "--max-connections must be between 1 and 100000."),
            (self.drain_seconds >= 0 and self.graceful_timeout_s >= 0, "shutdown timings must be >= 0."),
            (self.log_level in ("debug", "info", "warning", "error"), "--log-level must be debug, info, warning or error."),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        if self.api_key is not None and self.api_key.strip() != self.api_key:
            raise InputError("--api-key must not start or end with whitespace.")

    def host_is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def accepted_hostnames(self) -> set[str] | None:
        """Host header names accepted, or None for "any" (explicit non-loopback bind, no list)."""
        names = {h.strip().lower().strip("[]") for h in self.allowed_hosts if h.strip()}
        if self.host_is_loopback():
            return names | set(LOOPBACK_NAMES)
        if not names:
            return None
        names |= set(LOOPBACK_NAMES)  # local health checks and curl on the box itself
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower().strip("[]"))
        return names


def available_cores() -> int:
    """Cores this process may run on (at most 8: beyond that, run several servers)."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ModelSlot:
    """One served model: its spec, the name it was given by, and its verified artifacts per precision."""

    reference: str  # what the operator typed (catalogue name or bundle folder)
    spec: ModelSpec
    artifacts: dict[str, tuple[Path, dict]]  # precision -> (onnx path, manifest)
    default_precision: str

    @property
    def name(self) -> str:
        return self.spec.name


def resolve_models(config: ServerConfig, build_missing: Builder | None = None) -> list[ModelSlot]:
    """Resolve and verify every configured model before serving.

    The default precision must have a verified artifact (``build_missing`` is called once to
    create a missing one, e.g. in a subprocess so this process never imports torch: fp32 by
    export, INT8 from the model's calibration table). The other precision is served too when its
    artifact already exists. An artifact that exists but fails its checksum is always an error:
    the server refuses to start rather than serve it.

    Raises:
        UnknownModelError, ModelError, ArtifactVerificationError: with a one-line message.
    """
    references = config.models or [default_model_name()]
    slots: list[ModelSlot] = []
    seen: dict[str, str] = {}
    for reference in references:
        spec = resolve_model(reference)
        if spec.name in seen:
            if seen[spec.name] == str(reference):
                continue  # the same model named twice: serve it once
            raise ModelError(f"Two models are both called '{spec.name}'; serve one of them.")
        seen[spec.name] = str(reference)
        found = verified_artifacts(spec)
        how = {"build": build_missing is not None, "builder": build_missing, "reference": str(reference)}
        default = config.precision
        if default == "auto":
            default, found = auto_precision(spec, found, runtime=config.runtime, **how)
        if default not in found:
            built = ensure_artifact(spec, default, **how)  # first: building INT8 may export the fp32 too
            found = {**verified_artifacts(spec), default: built}
        if config.runtime == "openvino":
            found = _verified_for_openvino(spec, str(reference), found, default)
        slots.append(ModelSlot(str(reference), spec, found, default))
    return slots


def _verified_for_openvino(spec: ModelSpec, reference: str, artifacts: dict[str, tuple[Path, dict]],
                           default_precision: str) -> dict[str, tuple[Path, dict]]:
    """Keep the artifacts OpenVINO may serve: the default precision must have a verification
    record (else the ModelError saying how to make one); another precision without one is dropped."""
    from imgcls.runtimes.openvino import require_verification

    kept = {}
    for precision, artifact in artifacts.items():
        try:
            require_verification(spec, precision, artifact, reference)
            kept[precision] = artifact
        except ModelError:
            if precision == default_precision:
                raise
    return kept
