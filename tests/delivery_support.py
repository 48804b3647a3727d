"""Helpers shared by the delivery tests: deliver what is due the way ``run --once`` does."""

from __future__ import annotations

from bot.services.coordinator import Coordinator, SoloCoordinator
from bot.services.delivery import Deliverer, DeliveryOutcome
from bot.services.delivery_driver import DeliveryDriver


async def deliver_due(deliverer: Deliverer, coordinator: Coordinator | None = None) -> list[DeliveryOutcome]:
    """Everything due now on every channel, through the one delivery driver in burst mode (alone on the
    database unless ``coordinator`` says otherwise). Returns the outcomes."""
    driver = DeliveryDriver(deliverer, coordinator or SoloCoordinator(deliverer.store, deliverer.owner))
    return await driver.burst()
