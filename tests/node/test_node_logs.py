"""Structured logs: a node started with `--log-format json` (node0) or `[trustchain] log_format = "json"`
(node1) writes only JSON lines (time, level, node, event, fields), including its lifecycle events; a
text-format node (node2) does not."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from node_harness import Cluster, http


def test_json_log_lines(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=4, threshold=3, timeout="1s", dns_listeners=False, synchronous="normal")
    toml = c.configs[1].read_text()
    c.configs[1].write_text(toml.replace('genesis = "../genesis.json"\n',
                                         'genesis = "../genesis.json"\nlog_format = "json"\n', 1))
    try:
        c.start(0, "--log-format", "json", log_level="INFO")
        c.start(1, log_level="INFO")
        c.start(2, log_level="INFO")
        c.start(3)
        for i in range(4):
            c.wait_healthy(i)
        code, body = http("POST", c.apis[0] + "/api/v1/kv", {"op": "put", "key": "k", "value": "v"})
        assert code in (200, 201), body
    finally:
        c.stop_all()
    for i in (0, 1):
        lines = [ln for ln in c.log(i).splitlines() if ln.strip()]
        assert lines
        docs = [json.loads(ln) for ln in lines]  # every line is one JSON object
        for d in docs:
            assert {"time", "level", "node", "event", "fields"} <= set(d), d
            assert d["node"] == f"node{i}" and isinstance(d["fields"], dict)
            assert dt.datetime.fromisoformat(d["time"].replace("Z", "+00:00")).tzinfo is not None
        events = {d["event"]: d for d in docs}
        assert {"started", "ready", "stopping"} <= set(events), sorted(events)
        assert events["started"]["fields"]["replica"] == i and events["started"]["level"] == "INFO"
        assert events["ready"]["fields"]["api"] == c.apis[i]
    text = [ln for ln in c.log(2).splitlines() if ln.strip()]
    assert text and not text[0].startswith("{")
