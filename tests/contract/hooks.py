"""Checks of the contract run beyond schemathesis's own (tests/contract.rs)."""

import os

import schemathesis

WRONG_ROLE = os.environ.get("CONTRACT_WRONG_ROLE") == "1"


@schemathesis.check
def wrong_role_is_refused(ctx, response, case):
    """In the wrong-role run every route is called with a token of a role it is not for: no
    answer may succeed, and each refusal has the API's error shape."""
    if not WRONG_ROLE or case.operation.path.startswith("/twilio/"):
        return None
    if response.status_code < 400:
        raise AssertionError(
            f"{case.method} {case.path} answered {response.status_code} to a caller of the wrong role"
        )
    return None


@schemathesis.check
def errors_have_the_api_error_shape(ctx, response, case):
    """Every 4xx and 5xx of a JSON route is `{"error": {"code", "message"}}`."""
    if case.operation.path.startswith("/twilio/") or response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {e}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        raise AssertionError(f"{response.status_code} without the error shape: {body!r}")
    return None
