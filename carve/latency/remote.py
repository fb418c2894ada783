"""Client of ``carve agent``: latency of an artefact measured on another device (``http://HOST:PORT``)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .artefact import RUNTIME_OF, artefact_format
from .result import LatencyResult

TOKEN_ENV = "CARVE_AGENT_TOKEN"


def is_remote(device: str) -> bool:
    """True for a carve agent's address (``http://HOST:PORT``) rather than a local device."""
    return device.startswith(("http://", "https://"))


def _token(token: str | None) -> str:
    token = token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"token: a remote device needs the agent's token in ${TOKEN_ENV}")
    return token


def _call(url: str, token: str | None, data: bytes | None = None, headers: dict[str, str] | None = None,
          timeout_s: float = 300.0) -> dict[str, Any]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Authorization": f"Bearer {_token(token)}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except Exception:
            reason = exc.reason
        raise RuntimeError(f"{url}: the agent refused the request ({exc.code}: {reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"{url}: no carve agent answered ({exc})") from None


def remote_fingerprint(device: str, threads: int = 1, runtime: str | None = None,
                       token: str | None = None) -> dict[str, Any]:
    """The fingerprint of the agent's device, with ``runtime``'s version (for cache keys before
    anything is sent)."""
    query = urlencode(dict(threads=threads, **({"runtime": runtime} if runtime else {})))
    return _call(f"{device.rstrip('/')}/fingerprint?{query}", token, timeout_s=30)["fingerprint"]


def measure_remote(device: str, path: str | Path, runtime: str | None = None, threads: int = 1, batch: int = 1,
                   input_size: int = 224, protocol: str = "quick", token: str | None = None,
                   timeout_s: float = 300.0) -> LatencyResult:
    """Send the ONNX file, OpenVINO IR, ExecuTorch program or LiteRT model at ``path`` to the agent at ``device`` and return its figure,
    which carries the agent device's fingerprint. The token defaults to ``$CARVE_AGENT_TOKEN``."""
    path = Path(path)
    fmt = artefact_format(path)
    runtime = runtime or RUNTIME_OF[fmt]
    headers = {"Content-Type": "application/octet-stream"}
    data = path.read_bytes()
    if fmt == "openvino":
        headers["X-Carve-Xml-Bytes"] = str(len(data))
        data += path.with_suffix(".bin").read_bytes()
    query = urlencode(dict(runtime=runtime, threads=threads, batch=batch, size=input_size, protocol=protocol))
    answer = _call(f"{device.rstrip('/')}/measure?{query}", token, data, headers, timeout_s)
    result = LatencyResult.from_dict(answer)
    result.conditions["device"] = device
    return result
