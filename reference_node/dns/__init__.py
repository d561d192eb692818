"""The DNS I/O side: asyncio listeners (UDP, TCP, DoQ) and clients driving the sans-I/O state
machines in trustchain.dns. No protocol logic lives here."""
