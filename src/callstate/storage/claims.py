"""A claim with a package move and a batch, step by step, for stores without
``atomic_packages``; and the id a claim is stored under.

Each step is safe to send again after a lost reply, so a store's retries never see
their own earlier step as a competitor's.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, cast

from ..errors import CallstateError, ConfigError, ConflictError, HandoffStateError
from .killpoints import kill_point
from .rows import Batch, PackageMove, PackageRow

__all__ = [
    "ClaimSteps",
    "StepwiseClaim",
    "batch_alone",
    "claim_in_steps",
    "move_package",
    "new_claim_id",
    "package_not_in",
]


class ClaimSteps(Protocol):
    """What a stepwise claim needs of a store (every ``Store`` has it)."""

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]: ...

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]: ...

    async def package_get(self, package_id: str) -> PackageRow | None: ...

    async def package_transition(
        self, package_id: str, from_status: str, to_status: str
    ) -> bool: ...


def package_not_in(move: PackageMove, status: str | None) -> HandoffStateError:
    """The error of a claim whose package is not where ``move`` expects it."""
    where = "unknown to the store" if status is None else f"{status}, not {move.from_status}"
    msg = f"handoff package {move.package_id!r:.80} is {where}"
    return HandoffStateError(msg)


async def move_package(store: ClaimSteps, move: PackageMove) -> None:
    """A claim's package move, as its own first step (stores without ``atomic_packages``).

    Raises:
        HandoffStateError: the package is not in ``move.from_status``.
    """
    if not await store.package_transition(move.package_id, move.from_status, move.to_status):
        row = await store.package_get(move.package_id)
        raise package_not_in(move, None if row is None else row.status)


def batch_alone(
    session_id: str, expected_epoch: int, package: PackageMove | None, then: Batch | None
) -> Batch | None:
    """``then``, when a claim carries it and no package, written at the claim's new epoch
    for its session: what a store with ``atomic_claims`` takes in one step (None: the
    claim goes step by step)."""
    if package is not None or then is None:
        return None
    if (then.session_id, then.epoch) != (session_id, expected_epoch + 1):
        return None
    return then


async def claim_in_steps(
    store: ClaimSteps,
    claim: Callable[[], Awaitable[int]],
    package: PackageMove | None,
    then: Batch | None,
) -> int:
    """``Store.claim`` as steps, for stores without ``atomic_packages``: move the package,
    run ``claim`` (the store's own claim), append ``then``.

    Each step is safe to send again after a lost reply (a package move carries its own
    transition id, a claim its claim id, an append is recognised by its bytes), so the
    store's retries never see their own earlier step as a competitor's.
    """
    if package is not None:
        await move_package(store, package)
        kill_point("claim.package_moved")
    epoch = await claim()
    kill_point("claim.claimed")
    if then is not None:
        [error] = await store.append([then])
        if error is not None:
            raise error
    return epoch


class StepwiseClaim:
    """``Store.claim`` for a store without ``atomic_packages``: a package move and a
    batch go step by step around the store's own plain claim, ``_claim``.

    A whole claim sent again with its ``claim_id`` after it was done (its package moved,
    its batch stored) returns the same epoch; one interrupted between steps is finished.
    A store that can take a claim with a batch alone in one step (``atomic_claims``)
    overrides ``_claim_alone``.
    """

    async def _claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float, claim_id: str
    ) -> int:
        raise NotImplementedError

    async def _claimed_as(self, session_id: str, epoch: int, claim_id: str) -> bool:
        """True if the session is at ``epoch``, taken by the claim ``claim_id``."""
        raise NotImplementedError

    async def _claim_alone(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        then: Batch,
        claim_id: str,
    ) -> int | None:
        """Claim and append ``then`` in one step, all or nothing (the new epoch), or None
        when this store takes such a claim step by step (this default)."""
        return None

    async def claim(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        *,
        package: PackageMove | None = None,
        then: Batch | None = None,
        claim_id: str | None = None,
    ) -> int:
        cid = new_claim_id(claim_id)
        alone = batch_alone(session_id, expected_epoch, package, then)
        if alone is not None:
            epoch = await self._claim_alone(
                session_id, expected_epoch, owner, lease_until, alone, cid
            )
            if epoch is not None:
                return epoch

        def plain() -> Awaitable[int]:
            return self._claim(session_id, expected_epoch, owner, lease_until, cid)

        if package is None and then is None:
            return await plain()
        store = cast("ClaimSteps", self)
        try:
            return await claim_in_steps(store, plain, package, then)
        except (HandoffStateError, ConflictError):
            # the package is moved or the batch is stored: by this very claim, before?
            if not await self._claimed_as(session_id, expected_epoch + 1, cid):
                raise
        if then is not None:
            stored = await store.read_events(session_id, then.first_seq - 1)
            if stored[: len(then.events)] != then.events:
                [error] = await store.append([then])
                if error is not None:
                    raise error
        return expected_epoch + 1


def new_claim_id(claim_id: str | None) -> str:
    """The id a claim is stored under: the caller's, or a fresh one for this call.

    Raises:
        ConfigError: ``claim_id`` is empty or not a string.
    """
    if claim_id is None:
        return uuid.uuid4().hex
    if not isinstance(claim_id, str) or not claim_id:
        msg = f"claim_id must be a non-empty string, got {claim_id!r:.80}"
        raise ConfigError(msg)
    return claim_id
