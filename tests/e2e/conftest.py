"""Headless Chromium (Debian's package, never a downloaded browser) driven by Playwright.

The browser trusts exactly one extra certificate: the local IdP's, pinned by its public-key hash
(``--ignore-certificate-errors-spki-list``), so every other TLS check stays on. Screenshots go to
``tests/artifacts/e2e/``; with ``DATALAKE_DOCS_SCREENSHOTS=1`` the ones the user guide shows are
also copied to ``docs/images/`` (``make docs-screenshots``), the profile status page for docs/operator.md among them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from localplatform.browser import chromium_path
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "e2e"
DOCS_IMAGES = REPO / "docs" / "images"


def chromium() -> str:
    """Debian's Chromium; `make prepare` installs it (package `chromium`)."""
    found = chromium_path()
    if not found:
        raise pytest.UsageError("Chromium is not installed: run `make prepare` (it installs Debian's `chromium`)")
    return found


def spki_pin(cert_pem: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate: the form Chromium's pin list takes."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Package-scoped: Playwright's sync API keeps an event loop running in this thread while open,
    which the async tests that run after tests/e2e (pytest-asyncio) cannot share."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def idp_cert(platform_factory: Any) -> Path:
    info = platform_factory()
    return Path(info["idp"]["ca"]).with_name("server.pem")


@pytest.fixture(scope="package")
def browser(playwright: Playwright, idp_cert: Path) -> Iterator[Browser]:
    for stale in ARTIFACTS.glob("*-FAILED.png"):
        stale.unlink()  # from an earlier run; this run's failures are the ones to look at
    args = [f"--ignore-certificate-errors-spki-list={spki_pin(idp_cert)}"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox on
    browser = playwright.chromium.launch(executable_path=chromium(), args=args)
    yield browser
    browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the page fixture knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile (no cookies) per test, sized like a laptop screen.

    When the test fails, the page as it was is saved as ``<test>-FAILED.png`` beside the other
    artifacts: the quickest way to see what a user would have seen.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-FAILED.png"), full_page=True)
    context.close()


class Shots:
    """Named screenshots: always kept as test artifacts, optionally refreshed in the docs."""

    def __init__(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.to_docs = os.environ.get("DATALAKE_DOCS_SCREENSHOTS") == "1"

    def take(self, page: Page, name: str, *, docs: bool = False, full_page: bool = False) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if docs and self.to_docs:
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMAGES / f"{name}.png")
        return path


@pytest.fixture
def shots() -> Shots:
    """Screenshots named after the screen they show (names are unique across the e2e tests)."""
    return Shots()
