"""Error messages name what went wrong and never carry a secret."""

from __future__ import annotations

from gogooku3.jquants.errors import RequestFailedError, SchemaError, safe_params


def test_safe_params_masks_secret_parameters_only():
    params = {"refreshtoken": "tok-123", "date": "2024-01-04", "Password": "pw"}
    assert safe_params(params) == {"refreshtoken": "***", "date": "2024-01-04", "Password": "***"}
    assert params["refreshtoken"] == "tok-123"  # the caller's dict is untouched


def test_request_failed_error_names_endpoint_params_page_without_secrets():
    err = RequestFailedError(
        "boom",
        endpoint="/token/auth_refresh",
        params={"refreshtoken": "tok-123"},
        page=3,
        attempts=7,
        status=503,
    )
    text = str(err)
    assert "/token/auth_refresh" in text and "page=3" in text and "attempts=7" in text and "503" in text
    assert "tok-123" not in text and err.params == {"refreshtoken": "***"}


def test_schema_error_carries_its_parts():
    err = SchemaError("topix", "C", "v2", "is required but missing")
    assert (err.dataset, err.field, err.version) == ("topix", "C", "v2")
    assert str(err) == "topix (v2): field 'C' is required but missing"
    assert isinstance(err, ValueError)
