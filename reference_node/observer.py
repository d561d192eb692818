"""This validator's part in outside-name validation: look, report, and never decide alone.

When the replicated state opens a validation (`ValidationOpened`), the node looks the challenge record
up in the public DNS through its own upstream resolvers (`[dns] upstream`), or for an ACME http-01
challenge fetches it from the name's web server (`outside_http`), and orders an observation signed by
its validator account. The decision is the replicated quorum rule, so what one node sees
(or claims to see) never validates a name by itself. A node without upstream resolvers abstains.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reference_node.outside_dns import saw_txt
from reference_node.outside_http import saw_http
from trustchain.app import validation
from trustchain.app.gate import OBSERVE
from trustchain.authorization.observations import HTTP01, ValidationOpened

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["OutsideObserver"]

log = logging.getLogger("trustchain.observer")


class OutsideObserver:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.observed = 0

    def on_events(self, events: list[object]) -> None:
        if self.node.config.trustchain.role != "validator":
            return  # an observer (non-voting replica) has no validator account to report with
        upstreams = self.node.config.dns.upstream
        for event in events:
            if not isinstance(event, ValidationOpened):
                continue
            if not upstreams:
                log.warning("no [dns] upstream configured: not observing %s", event.name)
                continue
            self.node.background(self._observe(event, upstreams))

    async def _observe(self, event: ValidationOpened, upstreams: tuple[str, ...]) -> None:
        if event.method == HTTP01:
            acme = self.node.config.acme
            seen = await saw_http(event.name, event.record_name, event.expected, upstreams, acme.http01_port,
                                  acme.http01_private_addresses)
        else:
            seen = await saw_txt(event.record_name, event.expected, upstreams)
        log.info("observed %s for validation %d: %s", event.record_name, event.validation_id,
                 "seen" if seen else "not seen")
        try:
            await self.node.submit(OBSERVE, validation.observe_command(event.validation_id, seen), timeout_s=30.0)
            self.observed += 1
        except Exception as exc:  # the node may be stopping or halted; the validation then expires
            log.warning("observation %d not ordered: %s", event.validation_id, exc)
