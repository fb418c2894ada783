"""``carve agent``: an HTTP server on the target device that times the artefacts it is sent.

It accepts only formats that cannot run code when loaded (an ONNX protobuf, OpenVINO IR: XML graph
plus raw weights, an ExecuTorch or LiteRT FlatBuffer), never pickles; every request must carry the token (``Authorization: Bearer T``);
uploads over ``max_mb`` are refused before they are read, slow uploads time out, and each
measurement runs under a protocol capped at ``max_seconds``. One request is served at a time, so
figures are never taken while another measurement runs. Every answer carries the device's
fingerprint.

API: ``GET /fingerprint?threads=N&runtime=R`` and ``POST /measure?runtime=&threads=&batch=&size=&protocol=``
with the ONNX file, .pte program or .tflite model as the body, or for OpenVINO IR the .xml then the .bin with header
``X-Carve-Xml-Bytes`` giving the length of the .xml part.
"""

from __future__ import annotations

import hmac
import json
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from carve.config import Config, setting

from .artefact import ARTEFACT_RUNTIMES
from .program_formats import PROGRAMS, program_of
from .fingerprint import device_fingerprint, physical_cores
from .protocol import PROTOCOLS

LIMITS = dict(batch=64, size=2048)  # the largest batch and input side a request may ask for


@dataclass
class AgentConfig(Config):
    """Where the agent listens, the token it requires and the bounds it puts on each request."""

    port: int = setting(8765, "in [0, 65535]", help="TCP port (0: any free port, printed at start)")
    token: str | None = setting(None, help="token every request must carry (default: $CARVE_AGENT_TOKEN)")
    host: str = setting("127.0.0.1", help="address to listen on (0.0.0.0 to accept other machines)")
    max_mb: float = setting(256.0, "positive", help="largest upload accepted, in MB")
    max_seconds: float = setting(60.0, "positive", help="longest timed phase of one measurement, and the "
                                                        "socket timeout of an upload, in seconds")


class AgentError(Exception):
    """A request the agent refuses: ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_onnx(data: bytes) -> None:
    """Refuse anything that is not a parseable ONNX model with a graph."""
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:
        raise AgentError(415, f"body: not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise AgentError(415, "body: not an ONNX model (no graph nodes)")


def check_ir(xml: bytes) -> None:
    """Refuse anything that is not an OpenVINO IR graph (XML whose root is <net>), DTDs included."""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise AgentError(415, "body: XML with a DTD or entities is refused")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise AgentError(415, f"body: not OpenVINO IR XML ({exc})") from None
    if root.tag != "net":
        raise AgentError(415, f"body: not OpenVINO IR (root element <{root.tag}>, expected <net>)")


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name, [str(default)])[0]
    try:
        value = int(text)
    except ValueError:
        raise AgentError(400, f"{name}: expected an integer, got {text!r}") from None
    if not low <= value <= high:
        raise AgentError(400, f"{name}: expected {low}..{high}, got {value}")
    return value


class AgentHandler(BaseHTTPRequestHandler):
    """One request: check the token, bound and check the upload, measure, answer JSON."""

    server: "AgentServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet unless asked)
        if self.server.verbose:
            super().log_message(format, *args)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _authorised(self) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
            raise AgentError(401, "Authorization: a valid 'Bearer TOKEN' header is required")

    def _handle(self, method: str) -> None:
        try:
            self._authorised()
            url = urlparse(self.path)
            query = parse_qs(url.query)
            threads = _int(query, "threads", 1, 1, physical_cores())
            if method == "GET" and url.path == "/fingerprint":
                runtime = query.get("runtime", [None])[0]
                if runtime is not None and runtime not in ARTEFACT_RUNTIMES:
                    raise AgentError(400, f"runtime: expected one of {list(ARTEFACT_RUNTIMES)}, got {runtime!r}")
                return self._answer(200, dict(fingerprint=device_fingerprint("cpu", threads, runtime)))
            if method == "POST" and url.path == "/measure":
                return self._answer(200, self._measure(query, threads))
            raise AgentError(404, f"{method} {url.path}: expected GET /fingerprint or POST /measure")
        except AgentError as exc:
            self._answer(exc.status, dict(error=str(exc)))
        except Exception as exc:  # a file the runtime cannot run: say so, keep serving
            self._answer(422, dict(error=f"{type(exc).__name__}: {exc}"))

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise AgentError(411, "Content-Length: required")
        if int(length) > self.server.max_bytes:
            raise AgentError(413, f"body: {int(length)} bytes, over the agent's limit of {self.server.max_bytes}")
        self.connection.settimeout(self.server.max_seconds)
        data = self.rfile.read(int(length))
        if len(data) != int(length):
            raise AgentError(400, "body: shorter than its Content-Length")
        return data

    def _measure(self, query: dict[str, list[str]], threads: int) -> dict[str, Any]:
        from .artefact_latency import measure_artefact

        runtime = query.get("runtime", ["onnxruntime"])[0]
        if runtime not in ARTEFACT_RUNTIMES:
            raise AgentError(400, f"runtime: expected one of {list(ARTEFACT_RUNTIMES)}, got {runtime!r}")
        name = query.get("protocol", ["quick"])[0]
        if name not in PROTOCOLS:
            raise AgentError(400, f"protocol: expected one of {list(PROTOCOLS)}, got {name!r}")
        protocol = PROTOCOLS[name]
        protocol = replace(protocol, max_time_s=min(protocol.max_time_s, self.server.max_seconds))
        batch = _int(query, "batch", 1, 1, LIMITS["batch"])
        size = _int(query, "size", 224, 8, LIMITS["size"])
        xml_bytes = self.headers.get("X-Carve-Xml-Bytes")
        body = self._body()
        with tempfile.TemporaryDirectory(prefix="carve_agent_") as tmp:
            program = program_of(body) if xml_bytes is None else None
            if program is not None:
                if runtime != program.runtime:
                    raise AgentError(400, f"runtime: {program.what} ({program.suffix}) runs in runtime={program.runtime}")
                path = Path(tmp) / f"model{program.suffix}"
                path.write_bytes(body)
            elif xml_bytes is None:
                if runtime in PROGRAMS:
                    raise AgentError(415, f"body: not {PROGRAMS[runtime].what} "
                                          f"(no {PROGRAMS[runtime].magic.decode()} identifier)")
                check_onnx(body)
                path = Path(tmp) / "model.onnx"
                path.write_bytes(body)
            else:
                if not xml_bytes.isdigit() or int(xml_bytes) > len(body):
                    raise AgentError(400, "X-Carve-Xml-Bytes: expected the length of the .xml part of the body")
                check_ir(body[:int(xml_bytes)])
                path = Path(tmp) / "model.xml"
                path.write_bytes(body[:int(xml_bytes)])
                path.with_suffix(".bin").write_bytes(body[int(xml_bytes):])
                if runtime != "openvino":
                    raise AgentError(400, "runtime: OpenVINO IR runs in runtime=openvino")
            result = measure_artefact(path, runtime, threads, batch, size, protocol)
        return dict(result.to_dict(), agent=dict(max_seconds=self.server.max_seconds))


class AgentServer(HTTPServer):
    """The agent's HTTP server (one request at a time)."""

    def __init__(self, cfg: AgentConfig, token: str, verbose: bool = False):
        if not token:
            raise ValueError("token: the agent needs a token (--token T or $CARVE_AGENT_TOKEN)")
        self.token, self.verbose = token, verbose
        self.max_bytes, self.max_seconds = int(cfg.max_mb * 1e6), cfg.max_seconds
        super().__init__((cfg.host, cfg.port), AgentHandler)


def serve(cfg: AgentConfig, token: str, verbose: bool = False) -> None:
    """Run the agent until interrupted, printing the address it listens on."""
    server = AgentServer(cfg, token, verbose)
    host, port = server.server_address[:2]
    print(f"carve agent listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
