"""Runs one receiver as a task: starts it, restarts it with backoff when it fails or asks
to, reports every transition to the listeners, and stops it on request."""

from __future__ import annotations

import logging
import random

import anyio

from ..clock import Clock
from ..scheduler.listener import (
    ListenerBus,
    ReceiverError,
    ReceiverInfo,
    ReceiverStarted,
    ReceiverStopped,
)
from .base import Receiver
from .block_generator import BlockGenerator

log = logging.getLogger("aiostream_engine.receiver")

MAX_RESTART_DELAY = 60.0


class ReceiverSupervisor:
    def __init__(
        self,
        receiver: Receiver,
        stream_id: int,
        blocks: BlockGenerator,
        clock: Clock,
        bus: ListenerBus,
        restart_delay: float,
    ) -> None:
        self.receiver = receiver
        self.stream_id = stream_id
        self.blocks = blocks
        self.clock = clock
        self._bus = bus
        self._restart_delay = restart_delay
        self._delay = restart_delay
        self._run_scope: anyio.CancelScope | None = None
        self._restart_reason: str | None = None
        self.stopping = False
        self.restarts = 0
        self.errors = 0
        self.last_error = ""
        self.finished = anyio.Event()
        receiver._supervisor = self

    def _info(self, active: bool) -> ReceiverInfo:
        return ReceiverInfo(
            self.stream_id, self.receiver.display_name, active, self.last_error, self.restarts
        )

    def report_error(self, error: BaseException | str) -> None:
        self.errors += 1
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._bus.post(ReceiverError(self._info(True)))

    def reset_backoff(self) -> None:
        self._delay = self._restart_delay

    def request_restart(self, reason: str, error: BaseException | None = None) -> None:
        self._restart_reason = reason
        log.info("receiver %s restarting: %s", self.receiver.display_name, reason)
        self.report_error(f"restarting: {reason}" + (f" ({type(error).__name__}: {error})" if error else ""))
        if self._run_scope is not None:
            self._run_scope.cancel()

    async def run(self) -> None:
        """Run the receiver until it ends, or is stopped; restart it whenever it fails."""
        try:
            while not self.stopping:
                self._restart_reason = None
                stored_before = self.blocks.records_stored
                failed = await self._run_once()
                if self.stopping or not (failed or self._restart_reason):
                    break  # stopped, or the source ended
                if self.blocks.records_stored > stored_before:
                    self._delay = self._restart_delay  # it worked for a while: back off afresh
                self.restarts += 1
                # Exponential backoff with jitter, on the engine's clock.
                pause = self._delay * (0.5 + random.random())
                self._delay = min(self._delay * 2, MAX_RESTART_DELAY)
                await self.clock.sleep_until(self.clock.now() + pause)
        finally:
            self._bus.post(ReceiverStopped(self._info(False)))
            self.finished.set()

    async def _run_once(self) -> bool:
        """One run of ``on_start``; True if it failed."""
        self._bus.post(ReceiverStarted(self._info(True)))
        failed = False
        try:
            with anyio.CancelScope() as scope:
                self._run_scope = scope
                await self.receiver.on_start()
        except Exception as exc:  # a receiver failure is reported and restarted, never fatal
            failed = True
            log.warning("receiver %s failed: %s", self.receiver.display_name, exc)
            self.report_error(exc)
        finally:
            self._run_scope = None
            with anyio.CancelScope(shield=True):
                try:
                    await self.receiver.on_stop()
                except Exception as exc:
                    self.report_error(exc)
        return failed

    def stop(self) -> None:
        """Ask the receiver to stop; its current run is cancelled."""
        self.stopping = True
        if self._run_scope is not None:
            self._run_scope.cancel()
