from __future__ import annotations

from sim.apps.base import SimApp
from sim.params import ParamRule, count
from trustchain.app.interface import Application
from trustchain.app.kvstore import KVStore, put


class KVApp(SimApp):
    """The ordered key-value store: puts of random values to `keys` (default 1000) keys."""

    name = "kv"
    param_types = {"keys": count(1), "value_bytes": ParamRule(int, minimum=0, maximum=1 << 20)}

    def create_application(self, replica_id: int) -> Application:
        return KVStore()

    def next_operation(self, client: int) -> bytes:
        key = b"k%d" % self.rng.randrange(int(self.params.get("keys", 1000)))
        return put(key, self.rng.randbytes(int(self.params.get("value_bytes", 64))))
