"""The models this process serves: one Classifier + MicroBatcher per (model, precision).

Loading and warm-up run on worker threads after the server starts listening, so ``/healthz``
answers and ``/readyz`` says "loading" meanwhile. Nothing here loads a model a client names:
only what the operator configured at start-up is ever served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from imgcls.engine import Classifier
from imgcls.errors import InputError, UnknownModelError
from imgcls.server.batcher import MicroBatcher
from imgcls.server.config import MAX_TOP_K, ModelSlot, ServerConfig
from imgcls.server.observability import Metrics

__all__ = ["ServedModel", "ModelRegistry", "PrecisionUnavailableError"]

log = logging.getLogger("imgcls.server")


class PrecisionUnavailableError(InputError):
    code = "precision_unavailable"


class ServedModel:
    """One (model, precision) pair: its classifier (after loading) and its batcher."""

    def __init__(self, slot: ModelSlot, precision: str, config: ServerConfig, metrics: Metrics,
                 server_depth: Callable[[], int] | None = None):
        self.slot = slot
        self.precision = precision
        self.config = config
        self.classifier: Classifier | None = None
        self.batcher = MicroBatcher(
            f"{slot.name}-{precision}", self._run, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue, workers=config.workers_per_model, observe=metrics.batcher_observer(slot.name, precision),
            server_depth=server_depth)
        self.record_cpu = metrics.stage_recorder(slot.name, precision)
        self.started = False
        self._loading: asyncio.Lock | None = None

    @property
    def name(self) -> str:
        return self.slot.name

    async def ensure_loaded(self) -> None:
        """Load, warm and start this precision on its first request if start-up did not.

        Only each model's default precision is loaded at start-up: a second ONNX session costs
        about 110 MB (EfficientNet-Lite0 fp32 next to INT8: 264 vs 155 MB at ready, 363 vs
        258 MB peak over 1,000 requests; see docs/benchmarks.md), which a server that never
        sees ``precision=`` requests should not pay. The first such request waits for the load.
        """
        if self.started:
            return
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if not self.started:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._load_and_warm)
                self.batcher.start()
                self.started = True
                log.info("loaded %s %s on first request", self.name, self.precision)

    def _load_and_warm(self) -> None:
        self.load()
        self.warm_up()

    def load(self) -> None:
        """Open the ONNX session (blocking; run on a thread). The artifact was verified at start-up."""
        self.classifier = Classifier(
            self.slot.spec, self.precision, threads=self.config.threads, solo_threads=self.config.solo_threads_or_cores,
            batch_size=self.config.max_batch, draft=self.config.draft,
            max_pixels=self.config.max_pixels, max_bytes=self.config.max_upload_bytes,
            artifact=self.slot.artifacts[self.precision], runtime=self.config.runtime,
            concurrent_calls=self.config.workers_per_model)

    def warm_up(self) -> None:
        """Run the batch sizes requests will form so the first of them do not pay for allocation."""
        assert self.classifier is not None
        self.classifier.warm_up((1, min(2, self.config.max_batch), self.config.max_batch))

    def _run(self, batch: np.ndarray, solo: bool) -> np.ndarray:
        assert self.classifier is not None
        if not self.classifier.runtime.computes_on_caller(solo):
            return self.classifier.probabilities(batch, solo=solo)
        started = time.thread_time()
        probabilities = self.classifier.probabilities(batch, solo=solo)
        self.record_cpu("model", time.thread_time() - started, len(batch))
        return probabilities


class ModelRegistry:
    """All served models, looked up by the name and precision a request asks for."""

    def __init__(self, slots: list[ModelSlot], config: ServerConfig, metrics: Metrics):
        if not slots:
            raise ValueError("at least one model must be served")
        self.config = config
        self.slots = {slot.name: slot for slot in slots}
        self.default_name = slots[0].name
        self.served: dict[tuple[str, str], ServedModel] = {
            (slot.name, precision): ServedModel(slot, precision, config, metrics, server_depth=self.images_admitted)
            for slot in slots for precision in slot.artifacts
        }

    def images_admitted(self) -> int:
        """Images decoding, waiting or in a model call, over every served model."""
        return sum(model.batcher.depth for model in self.served.values())

    def get(self, name: str | None, precision: str | None) -> ServedModel:
        """The served model for a request.

        Raises:
            UnknownModelError (404): no such model is served (the message lists the served ones).
            PrecisionUnavailableError (400): the model is served, but not at that precision.
        """
        slot = self.slots.get(name or self.default_name)
        if slot is None:
            served = ", ".join(sorted(self.slots))
            raise UnknownModelError(f"This server does not serve that model. Served models: {served}.")
        precision = precision or slot.default_precision
        model = self.served.get((slot.name, precision))
        if model is None:
            available = ", ".join(sorted(slot.artifacts))
            raise PrecisionUnavailableError(f"{slot.name} is served at {available} only, not {precision}.")
        return model

    async def load(self, warmup_delay_s: float = 0.0) -> float:
        """Load and warm each model at its default precision on a thread, then start their
        batchers (other precisions load on first use: ``ServedModel.ensure_loaded``).
        Returns seconds taken."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        eager = [m for m in self.served.values() if m.precision == m.slot.default_precision]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcls-load") as pool:
            for model in eager:
                await loop.run_in_executor(pool, model.load)
            if warmup_delay_s > 0:
                await asyncio.sleep(warmup_delay_s)
            for model in eager:
                await loop.run_in_executor(pool, model.warm_up)
        for model in eager:
            model.batcher.start()
            model.started = True
        return time.perf_counter() - started

    async def close(self) -> None:
        for model in self.served.values():
            await model.batcher.close()
            if model.classifier is not None:
                model.classifier.close()

    def describe(self, ready: bool) -> list[dict]:
        """What /api/v1/models says about each served model."""
        rows = []
        for name, slot in self.slots.items():
            spec = slot.spec
            rows.append({
                "name": name,
                "title": spec.title,
                "source": spec.source,
                "architecture": spec.architecture,
                "num_classes": spec.num_classes,
                "languages": spec.languages,
                "precisions": [p for p in ("fp32", "int8") if p in slot.artifacts],
                "default_precision": slot.default_precision,
                "runtime": self.config.runtime,
                "default": name == self.default_name,
                "loaded": True,
                "ready": ready,
                "preprocessing": spec.preprocessing.describe(),
                "preprocessing_values": spec.preprocessing.to_dict(),
                "max_top_k": min(MAX_TOP_K, spec.num_classes),
            })
        return rows
