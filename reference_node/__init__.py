"""Reference node: drives the trustchain/ state machines on asyncio."""
