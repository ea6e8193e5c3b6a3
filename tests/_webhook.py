"""Webhook requests as larkbot verifies them, and the faults Lark's requests can carry."""

from __future__ import annotations

from larkbot.sources.webhook import Verification, WebhookKeys, verify_request
from larkbot.testing import WebhookFault, WebhookRequest

__all__ = ["FAULTS", "MAX_BODY_BYTES", "verified"]

MAX_BODY_BYTES = 1_048_576

# Each fault the stand-in's driver can put into a request: the status larkbot answers, the
# outcome it counts and the reason it logs.
FAULTS: list[tuple[WebhookFault, int, str, str]] = [
    (WebhookFault.BAD_SIGNATURE, 401, "bad_signature", "signature does not match"),
    (WebhookFault.WRONG_TOKEN, 401, "bad_token", "verification token does not match"),
    (
        WebhookFault.PLAIN_BODY,
        400,
        "bad_body",
        "plain body while an encrypt key is configured",
    ),
    (
        WebhookFault.TRUNCATED_CIPHER,
        400,
        "bad_body",
        "cipher text length is not a multiple of 16 bytes above 16",
    ),
    (WebhookFault.OVERSIZED, 413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes"),
    (WebhookFault.INVALID_JSON, 400, "bad_body", "decrypted body is not valid JSON"),
]


def verified(
    request: WebhookRequest, keys: WebhookKeys, *, limit: int = MAX_BODY_BYTES
) -> Verification:
    """What larkbot's verification makes of ``request``, headers and body as Lark sent them."""
    return verify_request(
        request.body,
        keys=keys,
        timestamp=request.headers.get("X-Lark-Request-Timestamp"),
        nonce=request.headers.get("X-Lark-Request-Nonce"),
        signature=request.headers.get("X-Lark-Signature"),
        max_body_bytes=limit,
    )
