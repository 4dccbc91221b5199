"""/docs in a real browser (issue 15, item 1): headless Chromium, driven by selenium through the system's
chromedriver, opens Swagger UI on a real server process, authorizes with a bearer token and creates a
customer with POST /customers' "Try it out". Skipped only where Chromium and chromedriver are not
installed (.ci/run installs Debian's `chromium` and `chromium-driver` when it can)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.api import examples
from canopy_svc.api.app import ENDPOINTS
from tests.helpers import make_client
from tests.processes import ServerProcess, token_for

CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
CHROMEDRIVER = shutil.which("chromedriver")
# What Swagger UI shows for a document it cannot read (a version it does not know, a failed fetch).
CANNOT_RENDER = ("Unable to render this definition", "Failed to load API definition")
WAIT_SECONDS = 60.0  # a busy machine renders a 1 MB bundle slowly; every wait is bounded by this

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium and chromedriver on this machine (Debian: apt-get install chromium chromium-driver; "
    ".ci/run installs them when it runs as root or with sudo)",
)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def create_customer_through_the_page(base_url: str, token: str) -> dict[str, Any]:
    """What the page showed: the operations it listed, its answer to "Execute", the browser's console."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    try:
        wait = WebDriverWait(driver, WAIT_SECONDS)
        driver.get(f"{base_url}/docs")
        try:
            # The operations, or Swagger UI's word that it cannot show the document (then fail at once).
            wait.until(
                lambda d: (
                    d.find_elements(By.CSS_SELECTOR, ".opblock")
                    or any(words in d.find_element(By.TAG_NAME, "body").text for words in CANNOT_RENDER)
                )
            )
        except TimeoutException:
            pytest.fail(f"/docs rendered nothing in {WAIT_SECONDS}s:\n{driver.find_element(By.TAG_NAME, 'body').text}")
        operations = [
            (
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
            )
            for block in driver.find_elements(By.CSS_SELECTOR, ".opblock")
        ]
        if not operations:
            text = driver.find_element(By.TAG_NAME, "body").text
            pytest.fail(f"/docs shows no operations:\n{text}\nconsole: {driver.get_log('browser')}")

        # "Authorize": the bearer scheme's dialog takes the token; "Close" leaves it set.
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".auth-wrapper .authorize"))).click()
        dialog = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
        dialog.find_element(By.CSS_SELECTOR, "input").send_keys(token)
        dialog.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".modal-ux .btn-done"))).click()
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

        # POST /customers: open it, "Try it out", "Execute" with the example body the document shows.
        block = driver.find_element(By.ID, "operations-default-post_customers")
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
        wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, ".execute"))[0].click()
        status = wait.until(
            lambda d: block.find_elements(By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")
        )[0].text
        body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_description").text
        return {"operations": operations, "status": status, "body": body, "console": driver.get_log("browser")}
    finally:
        driver.quit()


async def test_swagger_ui_authorizes_and_creates_a_customer(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must use the system's browser and driver, never fetch one
    org_id, client_id, secret = await make_client(pool, "acme")
    _, other_id, other_secret = await make_client(pool, "globex")
    server = await asyncio.to_thread(ServerProcess(database_url, tmp_path, CANOPY_SVC_CARD_WORKER="0").start)
    try:
        token = await asyncio.to_thread(token_for, server, client_id, secret)
        shown = await asyncio.to_thread(create_customer_through_the_page, server.base_url, token)

        assert sorted(shown["operations"]) == sorted((e.method, e.path) for e in ENDPOINTS)
        assert shown["status"] == "200", shown["body"]
        # No violation of the page's Content-Security-Policy, nor any other error, in the console.
        assert [entry for entry in shown["console"] if entry["level"] == "SEVERE"] == []

        customer_id = examples.CUSTOMER["customer_id"]
        stored = await pool.fetchval("SELECT org_id FROM customers WHERE customer_id = $1", customer_id)
        assert stored == org_id
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            mine = await http.get(f"/customers/{customer_id}", headers={"Authorization": f"Bearer {token}"})
            assert mine.status_code == 200, mine.text
            assert mine.json()["name_last"] == examples.CUSTOMER["name_last"]
            other = await asyncio.to_thread(token_for, server, other_id, other_secret)
            theirs = await http.get(f"/customers/{customer_id}", headers={"Authorization": f"Bearer {other}"})
            assert theirs.status_code == 404
    finally:
        server.kill()
