"""The OpenAPI 3.1 description of the coordinator's HTTP API, generated from its models.

The paths are listed here; every schema is the JSON schema of a pydantic model: the wire
messages (the same ones ``mqtt_topics.md`` documents) and the API's own response models
(``models.py``), which the views fill. So the document says what the API answers, and
``tests/test_web_api.py`` validates real responses against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from coordinator.web.models import RESPONSE_MODELS
from hallq import messages as m
from hallq.config import HallConfig

_WIRE: list[type[BaseModel]] = [
    m.WindowState,
    m.QueueState,
    m.BoardState,
    m.StatsState,
    m.AlertEvent,
    m.ComponentHealth,
    m.ComfortState,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(
    status: str, description: str, schema: dict[str, Any], media: str = "application/json"
) -> dict[str, Any]:
    return {status: {"description": description, "content": {media: {"schema": schema}}}}


def _ok(
    description: str, schema: dict[str, Any], media: str = "application/json"
) -> dict[str, Any]:
    return _answer("200", description, schema, media)


def _body(model: str) -> dict[str, Any]:
    """A required JSON request body of the named schema."""
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str) -> dict[str, Any]:
    text = {
        "400": "bad input",
        "401": "login required (or wrong credentials)",
        "403": "CSRF token missing, another site's Origin, or a viewer trying to act",
        "404": "not found",
        "409": "refused (slot full, person limit, checked in, or the engine rejected the command)",
        "415": "body must be JSON",
        "429": "too many failed logins (the message says until when), or too many "
        "booking attempts from this address",
        "503": "unavailable (board renderer, or real-name booking not set up)",
    }
    return {c: _answer(c, text[c], _ref("Error"))[c] for c in codes}


def _param(
    name: str, where: str, schema: dict[str, Any], required: bool = True, description: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


_OBJ: dict[str, Any] = {"type": "object"}
_STR: dict[str, Any] = {"type": "string"}
# the desk's session cookie; a change also needs its CSRF token (and this site's Origin,
# when a browser sends one)
_READ: list[dict[str, list[str]]] = [{"session": []}]
_WRITE: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]


def _schemas() -> dict[str, Any]:
    models = list(dict.fromkeys([*_WIRE, *RESPONSE_MODELS]))
    _, defs = models_json_schema(
        [(model, "serialization") for model in models], ref_template="#/components/schemas/{model}"
    )
    return dict(defs.get("$defs", {}))


def openapi_document(cfg: HallConfig) -> dict[str, Any]:
    code = _param("code", "path", _STR)
    window = _param("window", "path", {"type": "integer", "minimum": 1})
    return {
        "openapi": "3.1.0",
        "info": {"title": f"hallq coordinator API — {cfg.hall.name}", "version": "1"},
        "paths": {
            "/api/hall": {
                "get": {
                    "summary": "the public hall: queues with estimates, board, comfort level now",
                    "responses": _ok("hall", _ref("PublicHall")),
                }
            },
            "/api/health": {
                "get": {
                    "summary": "liveness: is the coordinator connected to the broker; `city_link`: "
                    "how far the event log's shipping to the city lags (null: none)",
                    "responses": {
                        **_ok("connected", _ref("Health")),
                        **_answer("503", "the broker link is down", _ref("Health")),
                    },
                }
            },
            "/api/tickets/{number}": {
                "get": {
                    "summary": "one ticket of today: state, people ahead, wait, window",
                    "parameters": [_param("number", "path", _STR)],
                    "responses": {**_ok("the ticket", _ref("Ticket")), **_errors("404")},
                }
            },
            "/api/nearby": {
                "get": {
                    "summary": "nearby halls with a clearly shorter wait for the same service "
                    "(empty while the city link is down)",
                    "parameters": [
                        _param("service", "query", _STR),
                        _param(
                            "ticket",
                            "query",
                            _STR,
                            required=False,
                            description="compare with this waiting ticket's own wait",
                        ),
                    ],
                    "responses": {**_ok("nearby halls", _ref("Nearby")), **_errors("404")},
                }
            },
            "/api/boards": {
                "get": {
                    "summary": "the hall's LED call boards",
                    "responses": _ok("boards", {"type": "array", "items": _ref("BoardItem")}),
                }
            },
            "/api/boards/{board}.png": {
                "get": {
                    "summary": "a board as it looks now",
                    "parameters": [_param("board", "path", _STR)],
                    "responses": {
                        **_ok("PNG", {"type": "string", "format": "binary"}, "image/png"),
                        **_errors("404", "503"),
                    },
                }
            },
            "/api/comfort": {
                "get": {
                    "summary": "办税舒适度指数 as data, from today: the state/comfort payload",
                    "responses": {**_ok("comfort index", _ref("ComfortState")), **_errors("404")},
                }
            },
            "/api/comfort.png": {
                "get": {
                    "summary": "办税舒适度指数: the next 30 days by hour, 较少/适中/较多",
                    "responses": {
                        **_ok("PNG", {"type": "string", "format": "binary"}, "image/png"),
                        **_errors("404"),
                    },
                }
            },
            "/api/stream": {
                "get": {
                    "summary": "Server-Sent Events: `hello`, then `change` after every outcome",
                    "responses": _ok("event stream", _STR, "text/event-stream"),
                }
            },
            "/api/openapi.json": {
                "get": {"summary": "this document", "responses": _ok("OpenAPI document", _OBJ)}
            },
            "/api/appointments/slots": {
                "get": {
                    "summary": "bookable slots of a service on a day, with free places",
                    "parameters": [
                        _param("service", "query", _STR),
                        _param(
                            "day", "query", {"type": "string", "format": "date"}, required=False
                        ),
                    ],
                    "responses": {**_ok("slots", _ref("Slots")), **_errors("400")},
                }
            },
            "/api/appointments": {
                "post": {
                    "summary": "book a slot; the answer carries the appointment code",
                    "requestBody": _body("BookingRequest"),
                    "responses": {
                        **_answer("201", "booked", _ref("Booked")),
                        **_errors("400", "409", "429", "503"),
                    },
                }
            },
            "/api/appointments/{code}": {
                "get": {
                    "summary": "a booking and whether it was checked in",
                    "parameters": [code],
                    "responses": {**_ok("booking", _ref("Booking")), **_errors("404")},
                }
            },
            "/api/appointments/{code}/cancel": {
                "post": {
                    "summary": "cancel a booking with the same ID or phone number it was made with",
                    "parameters": [code],
                    "requestBody": _body("CancelRequest"),
                    "responses": {
                        **_ok("cancelled", _ref("Booking")),
                        **_errors("400", "404", "409", "429"),
                    },
                }
            },
            "/api/appointments/{code}/qr.svg": {
                "get": {
                    "summary": "the booking code as a QR code (SVG), for the dispenser's scanner",
                    "parameters": [code],
                    "responses": {
                        **_ok("QR code", {"type": "string"}, "image/svg+xml"),
                        **_errors("404"),
                    },
                }
            },
            "/api/supervisor/windows/{window}": {
                "post": {
                    "summary": "open/close/pause/resume a window or change its skills",
                    "security": _WRITE,
                    "parameters": [window],
                    "requestBody": _body("SupervisorCommand"),
                    "responses": {
                        **_ok("applied", _ref("CommandResult")),
                        **_errors("400", "401", "403"),
                        **_answer("409", "the engine refused the command", _ref("CommandResult")),
                    },
                }
            },
            "/api/supervisor/tickets/{number}": {
                "post": {
                    "summary": "the help desk's work on one ticket: a missed one back in "
                    "line, a waiting one sent to a window or service, or cancelled",
                    "security": _WRITE,
                    "parameters": [_param("number", "path", _STR)],
                    "requestBody": _body("TicketCommand"),
                    "responses": {
                        **_ok("applied", _ref("CommandResult")),
                        **_errors("400", "401", "403"),
                        **_answer("404", "no such ticket today", _ref("CommandResult")),
                        **_answer("409", "the engine refused the command", _ref("CommandResult")),
                    },
                }
            },
            "/api/supervisor/windows/{window}/impact": {
                "post": {
                    "summary": "what an action would do to the hall (the desk's confirmation); "
                    "changes nothing",
                    "security": _WRITE,
                    "parameters": [window],
                    "requestBody": _body("ImpactRequest"),
                    "responses": {
                        **_ok("the impact, in Chinese", _ref("Impact")),
                        **_errors("400", "401", "403"),
                    },
                }
            },
            "/api/supervisor/devices/{client}": {
                "post": {
                    "summary": "suspend a device's login (every command it sends refused "
                    "until resumed; with void_minutes, the tickets it issued in those minutes "
                    "that still wait are voided) or resume it",
                    "security": _WRITE,
                    "parameters": [_param("client", "path", _STR, description="its agent id")],
                    "requestBody": _body("DeviceRequest"),
                    "responses": {
                        **_ok("applied", _ref("DeviceResult")),
                        **_errors("400", "401", "403"),
                        **_answer(
                            "409", "refused (unknown device, no change)", _ref("DeviceResult")
                        ),
                    },
                }
            },
            "/api/supervisor/desk": {
                "get": {
                    "summary": "the supervisor desk in one answer: queues, function halls, "
                    "windows, KPIs against yesterday and the same weekday last month, "
                    "device problems, alerts, express-window advice",
                    "security": _READ,
                    "responses": {**_ok("the desk", _ref("Desk")), **_errors("401")},
                }
            },
            "/api/supervisor/invitations": {
                "get": {
                    "summary": "主动预约: taxpayers whose history shows complex business (by "
                    "identity hash prefix only) with quiet slots, and the invitations made",
                    "security": _READ,
                    "responses": {
                        **_ok("candidates and invitations", _ref("Invitations")),
                        **_errors("401"),
                    },
                },
                "post": {
                    "summary": "invite a candidate: book the slot under their identity hash",
                    "security": _WRITE,
                    "requestBody": _body("InviteRequest"),
                    "responses": {
                        **_answer("201", "booked", _ref("Booked")),
                        **_errors("400", "401", "403", "404", "409"),
                    },
                },
            },
            "/api/supervisor/invitations/{code}/decline": {
                "post": {
                    "summary": "the taxpayer declined: cancel the invitation's booking",
                    "security": _WRITE,
                    "parameters": [code],
                    "responses": {
                        **_ok("cancelled", _ref("Booking")),
                        **_errors("400", "401", "403", "404", "409"),
                    },
                }
            },
            "/api/supervisor/alerts/ack": {
                "post": {
                    "summary": "acknowledge an alert by its key, as the logged-in supervisor "
                    "(audited)",
                    "security": _WRITE,
                    "requestBody": _body("AckRequest"),
                    "responses": {
                        **_ok("acknowledged", _ref("Done")),
                        **_errors("400", "401", "403", "404"),
                    },
                }
            },
            "/api/supervisor/advice/{id}/{verb}": {
                "post": {
                    "summary": "apply (logged supervisor set_skills commands), dismiss, or "
                    "restore (switch the windows back) a piece of express-window advice",
                    "security": _WRITE,
                    "parameters": [
                        _param("id", "path", _STR),
                        _param(
                            "verb",
                            "path",
                            {"type": "string", "enum": ["apply", "dismiss", "restore"]},
                        ),
                    ],
                    "responses": {
                        **_ok("the advice as it stands now", _ref("AdviceView")),
                        **_errors("401", "403", "404", "409"),
                    },
                }
            },
            "/api/supervisor/appointments": {
                "post": {
                    "summary": "invite a taxpayer: book on their behalf",
                    "security": _WRITE,
                    "requestBody": _body("BookingRequest"),
                    "responses": {
                        **_answer("201", "booked", _ref("Booked")),
                        **_errors("400", "401", "403", "409"),
                    },
                },
                "get": {
                    "summary": "the bookings of a day",
                    "security": _READ,
                    "parameters": [
                        _param("day", "query", {"type": "string", "format": "date"}, required=False)
                    ],
                    "responses": {
                        **_ok("bookings", {"type": "array", "items": _ref("SupervisorBooking")}),
                        **_errors("400", "401"),
                    },
                },
            },
            "/api/supervisor/hall": {
                "get": {
                    "summary": "the internal hall: windows by function hall, KPIs, devices, alerts",
                    "security": _READ,
                    "responses": {**_ok("hall summary", _ref("Hall")), **_errors("401")},
                }
            },
            "/api/supervisor/devices": {
                "get": {
                    "summary": "presence and health of every client",
                    "security": _READ,
                    "responses": {
                        **_ok("devices", {"type": "array", "items": _ref("Device")}),
                        **_errors("401"),
                    },
                }
            },
            "/api/supervisor/alerts": {
                "get": {
                    "summary": "engine alerts, offline devices, services past their wait target",
                    "security": _READ,
                    "responses": {
                        **_ok("alerts", {"type": "array", "items": _ref("Alert")}),
                        **_errors("401"),
                    },
                }
            },
            "/api/supervisor/whoami": {
                "get": {
                    "summary": "the logged-in user (as /api/session)",
                    "security": _READ,
                    "responses": {**_ok("session", _ref("WhoAmI")), **_errors("401")},
                }
            },
            "/api/supervisor/audit": {
                "get": {
                    "summary": "the audit log, newest first: who did what, when, from where "
                    "(supervisors only)",
                    "security": _READ,
                    "parameters": [
                        _param(
                            "limit",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": 500},
                            required=False,
                        ),
                        _param(
                            "before",
                            "query",
                            {"type": "integer"},
                            required=False,
                            description="an entry id: page further back",
                        ),
                        _param(
                            "console",
                            "query",
                            {"type": "integer", "enum": [0, 1]},
                            required=False,
                            description="1: only the consoles' commands over MQTT (role "
                            "console); 0: all but those (the desk's own)",
                        ),
                    ],
                    "responses": {
                        **_ok("entries", {"type": "array", "items": _ref("AuditEntry")}),
                        **_errors("400", "401", "403"),
                    },
                }
            },
            "/api/login": {
                "post": {
                    "summary": "log into the supervisor desk: sets the session cookie "
                    "(HttpOnly, SameSite=Strict, Secure over TLS)",
                    "requestBody": _body("LoginRequest"),
                    "responses": {
                        **_ok("logged in", _ref("WhoAmI")),
                        **_errors("400", "401", "403", "415", "429"),
                    },
                }
            },
            "/api/logout": {
                "post": {
                    "summary": "end the session",
                    "security": _WRITE,
                    "responses": {**_ok("logged out", _ref("Done")), **_errors("401", "403")},
                }
            },
            "/api/session": {
                "get": {
                    "summary": "the current session: user, role, CSRF token",
                    "security": _READ,
                    "responses": {**_ok("session", _ref("WhoAmI")), **_errors("401")},
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "hallq_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }
