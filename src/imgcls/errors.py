"""One exception hierarchy for imgcls, mapped to HTTP status and CLI exit code in one place.

    ImgclsError                       (500, exit 1)
    ├── InputError                    (400, exit 2)   bad input from the caller
    │   ├── EmptyFileError            (400)
    │   ├── CorruptImageError         (400)
    │   ├── UnsupportedMediaError     (415)
    │   ├── ImageTooLargeError        (413)  pixel count / dimensions over the cap
    │   └── PayloadTooLargeError      (413)  byte size over the cap
    ├── ModelError                    (exit 3)
    │   ├── UnknownModelError         (404 over HTTP: the client named a model we do not serve)
    │   ├── WeightsNotFoundError      (503)
    │   ├── ChecksumError
    │   └── ArtifactVerificationError
    ├── DatasetError                  (exit 2)  fine-tuning data that cannot be trained on
    └── OverloadedError               (503)

Messages are written for the person who sent the input: plain words, no paths of ours,
no internal names. The HTTP layer and the CLI translate with `http_status` / `exit_code`.
"""

from __future__ import annotations

__all__ = [
    "ImgclsError",
    "InputError",
    "EmptyFileError",
    "CorruptImageError",
    "UnsupportedMediaError",
    "ImageTooLargeError",
    "PayloadTooLargeError",
    "ModelError",
    "UnknownModelError",
    "WeightsNotFoundError",
    "ChecksumError",
    "ArtifactVerificationError",
    "DatasetError",
    "OverloadedError",
]


class ImgclsError(Exception):
    """Base of every error imgcls raises on purpose."""

    code = "internal_error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class InputError(ImgclsError):
    code = "bad_request"
    http_status = 400
    exit_code = 2


class EmptyFileError(InputError):
    code = "empty_file"


class CorruptImageError(InputError):
    code = "corrupt_image"


class UnsupportedMediaError(InputError):
    code = "unsupported_media_type"
    http_status = 415


class ImageTooLargeError(InputError):
    code = "image_too_large"
    http_status = 413


class PayloadTooLargeError(InputError):
    code = "payload_too_large"
    http_status = 413


class ModelError(ImgclsError):
    code = "model_error"
    exit_code = 3


class UnknownModelError(ModelError):
    code = "unknown_model"
    http_status = 404


class WeightsNotFoundError(ModelError):
    code = "weights_not_found"
    http_status = 503


class ChecksumError(ModelError):
    code = "checksum_mismatch"


class ArtifactVerificationError(ModelError):
    code = "artifact_verification_failed"


class DatasetError(ImgclsError):
    code = "bad_dataset"
    exit_code = 2


class OverloadedError(ImgclsError):
    code = "overloaded"
    http_status = 503
