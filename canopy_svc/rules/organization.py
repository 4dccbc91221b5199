"""The calling organization's own settings: its issuer processor (Lithic) account, its duplicate policy."""

from __future__ import annotations

import asyncpg
import msgspec
from msgspec import UNSET

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.issuers import webhooks
from canopy_svc.issuers.gateway import LITHIC_KEY_CONTEXT
from canopy_svc.issuers.hosts import LITHIC_ONLY, LithicHosts
from canopy_svc.issuers.lithic import LITHIC_SANDBOX_URL
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import organizations as store
from canopy_svc.wire.errors import InvalidInput, detail
from canopy_svc.wire.models import (
    AccountHoldersConfig,
    IssuerProcessors,
    IssuerProcessorsUpdate,
    LithicConfigOut,
    OrganizationSettings,
    OrganizationSettingsUpdate,
    SimulatorConfig,
)

ISSUER_PROCESSORS_DECODER = BodyDecoder(IssuerProcessorsUpdate)
SETTINGS_DECODER = BodyDecoder(OrganizationSettingsUpdate)


def parse_issuer_processors(body: bytes, hosts: LithicHosts = LITHIC_ONLY) -> IssuerProcessorsUpdate:
    """The body of PUT /organization/issuer_processors, its base_url one of `hosts`."""
    payload = ISSUER_PROCESSORS_DECODER.decode(body)
    config = payload.lithic_config
    if config is not UNSET and config is not None and config.base_url is not None:
        # Refused here, when set, and checked again at every connection (canopy_svc/issuers/egress.py).
        problem = hosts.problem(config.base_url)
        if problem is not None:
            raise InvalidInput([detail("/lithic_config/base_url", "format", {"format": "uri"}, problem)])
    secret = config.webhook_secret if config is not UNSET and config is not None else None
    if isinstance(secret, str) and not webhooks.is_secret(secret):
        message = "must be whsec_ and the base64 of at least 16 bytes, as Lithic shows it"
        raise InvalidInput([detail("/lithic_config/webhook_secret", "format", {"format": "whsec"}, message)])
    return payload


_ACCOUNT_HOLDERS = msgspec.json.Decoder(AccountHoldersConfig)


def account_holders_config(stored: str | None) -> AccountHoldersConfig | None:
    """The organization's account holder setting as stored (organizations.lithic_account_holders)."""
    return _ACCOUNT_HOLDERS.decode(stored) if stored is not None else None


def _answer(record: asyncpg.Record, webhook_secret_last_four: str | None = None) -> IssuerProcessors:
    simulator = account_holders_config(record["simulator_account_holders"])
    if record["lithic_api_key_encrypted"] is None:
        if simulator is not None:
            return IssuerProcessors(lithic_config=None, simulator_config=SimulatorConfig(account_holders=simulator))
        return IssuerProcessors(lithic_config=None)
    return IssuerProcessors(
        lithic_config=LithicConfigOut(
            api_key="****" + (record["lithic_api_key_last_four"] or ""),
            base_url=record["lithic_base_url"] or LITHIC_SANDBOX_URL,
            webhook_secret=None if webhook_secret_last_four is None else "whsec_****" + webhook_secret_last_four,
            account_holders=account_holders_config(record["lithic_account_holders"]),
        )
    )


async def _current(conn: Queryable, org_id: int) -> IssuerProcessors:
    record = await store.lithic_config(conn, org_id)
    return _answer(record, await store.lithic_webhook_secret_last_four(conn, org_id))


async def set_issuer_processors(
    conn: Conn, org_id: int, payload: IssuerProcessorsUpdate, cipher: DataCipher
) -> IssuerProcessors:
    """Sets what `payload` (from parse_issuer_processors) says."""
    config = payload.lithic_config
    if config is UNSET:
        pass
    elif config is None:  # null removes the key: cards go back to the simulator
        await store.set_lithic_config(conn, org_id, None, None, None)
        await store.set_lithic_webhook_secret(conn, org_id, None, None)
        await store.set_lithic_account_holders(conn, org_id, None)
    else:
        encrypted = cipher.encrypt(config.api_key, context=LITHIC_KEY_CONTEXT)
        last_four = config.api_key[-4:] if len(config.api_key) >= 12 else ""
        await store.set_lithic_config(conn, org_id, encrypted, last_four, config.base_url)
        if config.webhook_secret is None:
            await store.set_lithic_webhook_secret(conn, org_id, None, None)
        elif config.webhook_secret is not UNSET:
            sealed = cipher.encrypt(config.webhook_secret, context=webhook_secret_context(org_id))
            await store.set_lithic_webhook_secret(conn, org_id, sealed, config.webhook_secret[-4:])
        # The config is replaced whole, as its key and base_url are: sent without it, enrollment is off.
        holders = config.account_holders
        await store.set_lithic_account_holders(
            conn, org_id, msgspec.json.encode(holders).decode() if holders is not None else None
        )
    simulator = payload.simulator_config
    if simulator is not UNSET:
        holders = simulator.account_holders if simulator is not None else None
        await store.set_simulator_account_holders(
            conn, org_id, msgspec.json.encode(holders).decode() if holders is not None else None
        )
    return await _current(conn, org_id)


def webhook_secret_context(org_id: int) -> bytes:
    """The webhook secret is bound to its organization: a ciphertext copied to another row does not open."""
    return b"lithic_webhook_secret:" + str(org_id).encode()


async def get_issuer_processors(conn: Queryable, org_id: int) -> IssuerProcessors:
    return await _current(conn, org_id)


async def get_settings(conn: Queryable, org_id: int) -> OrganizationSettings:
    return OrganizationSettings(duplicate_customer_policy=await store.duplicate_policy(conn, org_id))  # type: ignore[arg-type]


async def update_settings(conn: Conn, org_id: int, payload: OrganizationSettingsUpdate) -> OrganizationSettings:
    if isinstance(payload.duplicate_customer_policy, str):
        await store.set_duplicate_policy(conn, org_id, payload.duplicate_customer_policy)
    return await get_settings(conn, org_id)
