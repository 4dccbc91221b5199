"""Which issuer makes an organization's cards: Lithic with the organization's own key, or the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from canopy_svc.core.crypto import DataCipher
from canopy_svc.issuers.card_issuer import CardIssuer
from canopy_svc.issuers.lithic import LITHIC_SANDBOX_URL, LithicClient
from canopy_svc.issuers.simulator import CardSimulator

# The associated data of an organization's encrypted Lithic key (organizations.lithic_api_key_encrypted).
LITHIC_KEY_CONTEXT = b"lithic_api_key"


@dataclass(frozen=True)
class Issuer:
    """Where an organization's cards are made: Lithic with its key, or the built-in simulator."""

    client: CardIssuer
    base_url: str
    api_key: str

    @property
    def simulated(self) -> bool:
        """The simulator keeps no card worth asking again: a change of one is only recorded."""
        return isinstance(self.client, CardSimulator)


class CardGateway:
    """Chooses, per organization, Lithic (when it has a key) or the simulator."""

    def __init__(
        self, cipher: DataCipher, *, lithic: LithicClient | None = None, simulator: CardSimulator | None = None
    ) -> None:
        self.cipher = cipher
        self.lithic = lithic or LithicClient()
        self.simulator = simulator or CardSimulator()

    def issuer(self, encrypted_key: bytes | None, base_url: str | None) -> Issuer:
        if encrypted_key is None:
            return Issuer(self.simulator, "simulator", "simulator")
        api_key = self.cipher.decrypt(bytes(encrypted_key), context=LITHIC_KEY_CONTEXT)
        return Issuer(self.lithic, base_url or LITHIC_SANDBOX_URL, api_key)

    async def aclose(self) -> None:
        await self.lithic.aclose()
