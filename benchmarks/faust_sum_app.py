"""The faust peer of the runtime benchmark (run by benchmarks/peers.py as `faust worker`):
per-key sum of load1 in a RocksDB table, decoding with Vigil's faust codec."""

import json
import os
import sys
import time

import faust

sys.path.insert(0, os.environ["VIGIL_REPO"])
from app.interop.faust import register_codecs

register_codecs(os.environ["VIGIL_REGISTRY"])
N = int(os.environ["BENCH_EVENTS"])
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
app = faust.App(os.environ["BENCH_APP_ID"], broker="kafka://" + os.environ["VIGIL_BOOTSTRAP"],
                store="rocksdb://", datadir=os.environ["BENCH_DATADIR"], topic_partitions=PARTITIONS,
                consumer_auto_offset_reset="earliest", web_enabled=False)
topic = app.topic(os.environ["BENCH_TOPIC"], key_type=str, value_serializer="vigil")
sums = app.Table("sums", default=float, partitions=PARTITIONS)
marks = {"n": 0, "first": 0.0}

@app.agent(topic)
async def summer(stream):
    async for key, event in stream.items():
        sums[key] += event["metrics"].get("load1", 0.0)
        marks["n"] += 1
        if marks["n"] == 1:
            marks["first"] = time.perf_counter()
        elif marks["n"] >= N:
            with open(os.environ["BENCH_RESULT"], "w") as fh:
                json.dump({"eps": N / (time.perf_counter() - marks["first"])}, fh)
            os._exit(0)

if __name__ == "__main__":
    app.main()
