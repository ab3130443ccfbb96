"""The API's OpenAPI 3.1 document, built from the request models and the configured limits.

Generated rather than kept as a file, so the schema of a flight is the one requests are validated
with (`serving.schemas`) and `maxItems` is the server's `max_batch`; a test validates the document,
checks it lists every route the app serves, and checks real answers against its schemas. The
metrics are on their own port (`/metrics`, Prometheus text), so they are not in it.
"""

from __future__ import annotations

from typing import Any

from serving.config import ServingConfig
from serving.schemas import request_model

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def json_body(schema: str, description: str, headers: tuple[str, ...] = ("X-Request-Id",)) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {h: {"$ref": f"#/components/headers/{h}"} for h in headers},
        "content": {"application/json": {"schema": ref(schema)}},
    }


def either(description: str, *schemas: str) -> dict[str, Any]:
    """An answer whose body is one of several schemas (a handler's own, or an error of the stack)."""
    answer = json_body(schemas[0], description)
    answer["content"]["application/json"]["schema"] = {"anyOf": [ref(name) for name in schemas]}
    return answer


def error(description: str, *headers: str) -> dict[str, Any]:
    return json_body("Error", description, ("X-Request-Id", *headers))


AUTH_ERRORS = {
    "401": error("No bearer token, or not a valid one.", "WWW-Authenticate"),
    "403": error("A valid token, but of the other role."),
}
COMMON_ERRORS = {
    "404": error("No such route."),
    "405": error("The route does not take this method.", "Allow"),
    "500": error("The server failed; the request id is in its log."),
    "503": error("No model is loaded yet, or too many requests are in flight.", "Retry-After"),
}
MODEL = ("X-Request-Id", "X-Model-Version")


def response_schemas() -> dict[str, Any]:
    """The answers' schemas, as the handlers of `serving.app` write them. Objects are open (a handler
    may add a field, such as a fallback's reason) except a field error's; the fields listed are always there."""
    version = {"type": "integer", "minimum": 1, "description": "registry version of the model that answered"}
    day = {"type": "string", "format": "date"}
    return {
        "Prediction": {
            "type": "object",
            "required": ["delay_probability", "model_version", "unknown_fields"],
            "properties": {
                "delay_probability": {"type": "number", "minimum": 0, "maximum": 1},
                "model_version": version,
                "unknown_fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["carrier", "origin", "dest", "tailnum"]},
                    "description": "fields whose value the model never saw: the probability is a guess on them "
                    "(PLATFORM_SERVING_UNKNOWN_VALUES=refuse answers 422 instead)",
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["model_version", "predictions"],
            "properties": {
                "model_version": version,
                "predictions": {
                    "type": "array",
                    "items": ref("Prediction"),
                    "description": "one per flight sent, in order",
                },
            },
        },
        "ModelInfo": {
            "type": "object",
            "description": "The model and snapshot being served and the server's limits.",
            "required": ["model_version", "served_days", "limits"],
            "properties": {
                "model_version": version,
                "served_days": {
                    "type": "object",
                    "required": ["first", "last"],
                    "properties": {"first": day, "last": day},
                    "description": "local departure days a flight may have",
                },
                "limits": {
                    "type": "object",
                    "required": ["max_batch", "max_body_bytes"],
                    "properties": {
                        "max_batch": {"type": "integer", "minimum": 1},
                        "max_body_bytes": {"type": "integer", "minimum": 1},
                    },
                },
            },
        },
        "ReloadResult": {
            "type": "object",
            "required": ["outcome", "model_version"],
            "properties": {
                "outcome": {"enum": ["swapped", "unchanged", "not_ready", "failed"]},
                "model_version": {"anyOf": [version, {"type": "null"}]},
                "reason": {"type": "string", "description": "why the champion is not the one served"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Ready": {
            "type": "object",
            "required": ["status", "model_version"],
            "properties": {
                "status": {"const": "ready"},
                "model_version": version,
                "fallback": {"description": "set while a version other than the champion serves"},
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "message", "type"],
            "properties": {
                "field": {
                    "type": "string",
                    "description": "what is wrong: a body path such as flights[3].distance, or a header",
                },
                "message": {"type": "string"},
                "type": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": ref("FieldError")},
                "reason": {"type": "string"},
            },
        },
    }


def headers() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "X-Request-Id": {
            "description": "The client's X-Request-Id (1-128 visible ASCII characters) or a generated one; "
            "the prediction log records it.",
            **text,
        },
        "X-Model-Version": {
            "description": "Registry version of the model that answered.",
            "schema": {"type": "integer"},
        },
        "WWW-Authenticate": {"description": "Bearer", **text},
        "Allow": {"description": "The methods the route takes.", **text},
        "Retry-After": {"description": "Seconds to wait before retrying.", **text},
    }


def openapi_document(config: ServingConfig) -> dict[str, Any]:
    request = request_model(config.max_batch).model_json_schema(ref_template=REF)
    schemas = {**request.pop("$defs", {}), "PredictRequest": request, **response_schemas()}
    client = [{"clientToken": []}]
    admin = [{"adminToken": []}]
    request_id = {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "Echoed in the answer and recorded with each prediction.",
        "schema": {"type": "string", "maxLength": 128},
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Flight delay model server",
            "version": "1",
            "description": "Delay probabilities of scheduled flights from the registry's champion. "
            "Errors are JSON and name the field at fault. Whatever the route, a request may also be "
            "refused before it reaches one, in JSON and with the connection closed: 400 (not HTTP), "
            "408 (its headers took longer than PLATFORM_SERVING_HEADER_TIMEOUT_SECONDS), 431 (its "
            "request line and headers exceed PLATFORM_SERVING_MAX_HEADER_BYTES). Prometheus "
            "metrics are served on a separate port (PLATFORM_SERVING_METRICS_PORT), not listed here.",
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Delay probability of each flight",
                    "security": client,
                    "parameters": [request_id],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {config.max_batch} flights and {config.max_body_bytes} bytes.",
                        "content": {"application/json": {"schema": ref("PredictRequest")}},
                    },
                    "responses": {
                        "200": json_body("PredictResponse", "A probability per flight.", MODEL),
                        **AUTH_ERRORS,
                        "408": error("The body did not arrive in time."),
                        "413": error("The body or the batch is too large.", *MODEL[1:]),
                        "415": error("The body is not JSON.", *MODEL[1:]),
                        "422": error("A flight is invalid or outside the served days.", *MODEL[1:]),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The model and snapshot being served",
                    "security": client,
                    "parameters": [request_id],
                    "responses": {
                        "200": json_body("ModelInfo", "What is served.", MODEL),
                        **AUTH_ERRORS,
                        **COMMON_ERRORS,
                    },
                }
            },
            "/v1/admin/reload": {
                "post": {
                    "operationId": "adminReload",
                    "summary": "Load the registry's champion and the current snapshot now",
                    "security": admin,
                    "parameters": [request_id],
                    "responses": {
                        "200": json_body("ReloadResult", "Swapped, or unchanged."),
                        **AUTH_ERRORS,
                        **COMMON_ERRORS,
                        "500": either(
                            "The reload failed; the previous model stays.", "ReloadResult", "Error"
                        ),
                        "503": either("Nothing to serve yet, or too many requests.", "ReloadResult", "Error"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers",
                    "security": [],
                    "responses": {"200": json_body("Health", "Alive."), **COMMON_ERRORS},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: a model is loaded",
                    "security": [],
                    "responses": {"200": json_body("Ready", "Ready."), **COMMON_ERRORS},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **COMMON_ERRORS,
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "headers": headers(),
            "securitySchemes": {
                "clientToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A client token (predict, model info); its name is logged with predictions.",
                },
                "adminToken": {"type": "http", "scheme": "bearer", "description": "An admin token (reload)."},
            },
        },
    }
