"""The practice web page in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium), against a real signed gateway: a partner books over gRPC, staff decide on the page, the
partner sees the outcome. Also writes docs/images/practice-inbox.png for docs/practice.md.

Selenium is synchronous; its calls run on a worker thread so the gateway keeps serving on the loop.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import fake_adapters
import pytest
from conftest import AUDIENCE, SECRET, reference_settings

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from gateway.practice_web.accounts import StaffAccounts
from otv_sdk.client import PartnerClient
from otv_sdk.models import AppointmentState, Contact, ContactKind, Interval
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (.ci/run installs both with apt-get)",
    ),
]

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)
PASSWORD = "anna-ihr-passwort"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "practice-inbox.png"
T = TypeVar("T")


@dataclass
class Env:
    gateway: Gateway
    partner: PartnerClient
    base: str

    async def book(self, family: str, type_id: str, index: int) -> Any:
        query = PatientQuery("Erika", family, date(1964, 8, 12), (Contact(ContactKind.MOBILE, "+491701234567"),))
        patient, _ = await self.partner.find_or_create_patient("demo", query, request_id=str(uuid.uuid4()))
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        columns = ("berg",) if type_id == "kontrolle" else ()
        window = SlotQuery(type_id, Interval(start, start + timedelta(days=7)), columns, PageRequest(200))
        chosen: list[Any] = []
        for slot in (await self.partner.find_slots("demo", window)).items:
            if all(slot.start >= other.end or slot.column_id != other.column_id for other in chosen):
                chosen.append(slot)
        slot = chosen[index]
        request = SlotRequest(type_id, slot.column_id, slot.start, patient.id)
        return await self.partner.book_appointment("demo", request, request_id=str(uuid.uuid4()))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    fake_adapters.SHARED["demo"] = create_adapter(
        "demo", reference_settings(database=str(tmp_path / "pvs.sqlite"), demo_anchor=ANCHOR.isoformat())
    )
    booking = {"mode": "confirmation", "modes": {"pzr": "manual"}, "confirm_within_hours": 1}
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": f"sqlite:///{tmp_path / 'state.sqlite'}",
            },
            "practices": {
                "demo": {"adapter": {"plugin": "fake_adapters:shared"}, "booking": booking},
                "other": {"adapter": {"plugin": "reference", "settings": reference_settings()}},
            },
        }
    )
    gateway = await Gateway.start(config)
    private, public = generate_key_pair()
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("alpha", "Alpha Termine GmbH")
    registry.add_key("alpha", "alpha-1", public)
    for practice in ("demo", "other"):
        registry.grant("alpha", practice)
    accounts = StaffAccounts(gateway.router.store)
    accounts.add("demo", "anna", PASSWORD)
    accounts.add("other", "otto", PASSWORD)
    assert gateway.http is not None
    try:
        async with PartnerClient.connect(gateway.address, signer=Signer("alpha-1", private, AUDIENCE)) as client:
            yield Env(gateway, client, f"http://127.0.0.1:{gateway.http.port}")
    finally:
        await gateway.stop(0)
        fake_adapters.SHARED.pop("demo", None)


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def run(step: Callable[[], T]) -> T:
    return await asyncio.to_thread(step)


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 15) -> Any:
    """Until `condition` holds; an element replaced while it is read (a page being swapped) is
    read again on the next try, not an error."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)


def login(driver: Any, base: str, practice: str, user: str, password: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of

    driver.get(f"{base}/practice/")
    driver.find_element(By.NAME, "practice").send_keys(practice)
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    before = driver.find_element(By.TAG_NAME, "body")
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    # The answer is a new page: wait until the login page is gone (its readyState was "complete"
    # already, so waiting for that alone could read the old page while it is being replaced).
    wait_for(driver, staleness_of(before))
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    return str(driver.find_element(By.TAG_NAME, "body").text)


def fetch_status(driver: Any, path: str, method: str = "GET", body: str = "") -> int:
    """An HTTP request from the page itself (same origin, with the session cookie)."""
    script = """
        const [path, method, body, done] = arguments;
        const init = {method: method, credentials: "same-origin", redirect: "manual"};
        if (method === "POST") {
            init.body = body;
            init.headers = {"Content-Type": "application/x-www-form-urlencoded"};
        }
        fetch(path, init).then(r => done(r.status), e => done(-1));
    """
    return int(driver.execute_async_script(script, path, method, body))


async def test_staff_work_the_inbox_in_a_real_browser(env: Env, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver, base = browser, env.base
    driver.set_script_timeout(15)

    # Wrong passwords are throttled: the sixth try is refused before the password is checked.
    for _ in range(5):
        assert "falsch" in await run(lambda: login(driver, base, "demo", "mallory", "nicht-das-passwort"))
    assert "Zu viele Fehlversuche" in await run(lambda: login(driver, base, "demo", "mallory", "nicht-das-passwort"))

    body = await run(lambda: login(driver, base, "demo", "anna", PASSWORD))
    assert "Keine offenen Buchungen" in body
    await run(lambda: wait_for(driver, lambda d: d.find_element(By.ID, "live").text == "live"))

    # A partner books over gRPC; the bookings appear without a reload.
    marker = await run(lambda: driver.execute_script("window.notReloaded = 'yes'; return window.notReloaded"))
    first = await env.book("Mustermann", "kontrolle", 0)
    second = await env.book("<b>Kunz</b>", "kontrolle", 1)
    manual = await env.book("Brandt", "pzr", 0)
    assert first.state is AppointmentState.PENDING_PRACTICE
    assert manual.state is AppointmentState.PENDING_TRANSFER
    await run(lambda: wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.item")) == 3))
    assert await run(lambda: driver.execute_script("return window.notReloaded")) == marker

    # The patient name with markup is text, not an element.
    def markup_is_text() -> None:
        card = driver.find_element(By.ID, f"item-{second.id}")
        assert card.find_element(By.CSS_SELECTOR, "[data-field=family_name]").text == "<b>Kunz</b>"
        assert card.find_elements(By.CSS_SELECTOR, "td b") == []

    await run(markup_is_text)

    # Copy a field of the manual booking.
    def copy_family_name() -> tuple[str, str]:
        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
        )
        card = driver.find_element(By.ID, f"item-{manual.id}")
        button = card.find_element(By.CSS_SELECTOR, "tr:first-child button.copy")
        button.click()
        wait_for(driver, lambda d: button.get_attribute("data-copied") == "yes")
        status = driver.find_element(By.ID, "copy-status").text
        pasted = driver.execute_async_script(
            "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('unreadable: ' + e));"
        )
        return status, str(pasted)

    status, pasted = await run(copy_family_name)
    assert status == "Nachname kopiert."
    assert pasted in ("Brandt", *(() if not pasted.startswith("unreadable") else (pasted,)))

    await run(lambda: driver.execute_script("window.scrollTo(0, 0)"))
    await run(lambda: driver.save_screenshot(str(SCREENSHOT)))
    assert SCREENSHOT.stat().st_size > 10_000

    # A form post without the CSRF token is refused, and changes nothing.
    refused = await run(
        lambda: fetch_status(driver, "/practice/demo/decide", "POST", f"decision=accept&appointment_id={first.id}")
    )
    assert refused == 403
    assert (await env.partner.get_appointment("demo", first.id)).state is AppointmentState.PENDING_PRACTICE

    # Accept one, reject one with a reason, mark the manual one transferred.
    def decide() -> None:
        driver.find_element(By.CSS_SELECTOR, f"#item-{first.id} button.accept").click()
        wait_for(driver, lambda d: "Angenommen." in d.find_element(By.TAG_NAME, "main").text)
        card = driver.find_element(By.ID, f"item-{second.id}")
        card.find_element(By.NAME, "reason").send_keys("Praxis an diesem Tag geschlossen")
        card.find_element(By.CSS_SELECTOR, "button.reject").click()
        wait_for(driver, lambda d: "Abgelehnt." in d.find_element(By.TAG_NAME, "main").text)
        card = driver.find_element(By.ID, f"item-{manual.id}")
        card.find_element(By.NAME, "pvs_id").send_keys("PVS-4711")
        card.find_element(By.CSS_SELECTOR, "button.transferred").click()
        wait_for(driver, lambda d: "Als übertragen markiert." in d.find_element(By.TAG_NAME, "main").text)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "article.item") == [])

    await run(decide)
    accepted = await env.partner.get_appointment("demo", first.id)
    rejected = await env.partner.get_appointment("demo", second.id)
    transferred = await env.partner.get_appointment("demo", manual.id)
    assert accepted.state is AppointmentState.BOOKED
    assert rejected.state is AppointmentState.REJECTED
    assert rejected.reject_reason == "Praxis an diesem Tag geschlossen"
    assert transferred.state is AppointmentState.BOOKED

    # Recent bookings show the outcomes.
    await run(lambda: driver.get(f"{base}/practice/demo/recent"))
    recent = await run(lambda: driver.find_element(By.TAG_NAME, "main").text)
    assert "abgelehnt" in recent
    assert "gebucht" in recent

    # Another practice's inbox is not reachable with this session.
    assert await run(lambda: fetch_status(driver, "/practice/other/")) == 403
    await run(lambda: driver.get(f"{base}/practice/other/"))
    assert "Kein Zugriff" in await run(lambda: driver.find_element(By.TAG_NAME, "body").text)
