"""One process of a multi-process test run: `noisecraft ARGS` in this process, watched through train()'s callback.

Started by torchrun or accelerate launch in place of `-m noisecraft.cli.main`, it runs the same command line
and, when $NC_PROBE_DIR is set, writes what this process saw to $NC_PROBE_DIR/rank<r>.json: the world size,
the data indices of its first step and a sha256 of its final weights. The library itself writes no such file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    import noisecraft.training.loop as loop
    from noisecraft.cli.main import main as cli
    from noisecraft.training.setup import param_digest

    seen: dict = {}
    train = loop.train

    def watch(step: loop.TrainStep) -> None:
        seen.setdefault("first_indices", step.indices)
        seen.update(rank=step.rank, world_size=step.world_size, model=step.model)

    def watched_train(*args, **kwargs):
        return train(*args, callback=watch, **kwargs)

    loop.train = watched_train
    rc = cli(sys.argv[1:])
    if "model" in seen and os.environ.get("NC_PROBE_DIR"):
        record = {k: seen[k] for k in ("rank", "world_size", "first_indices")}
        record["weights_sha256"] = param_digest(seen["model"])
        folder = Path(os.environ["NC_PROBE_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{seen['rank']}.json").write_text(json.dumps(record))
    return rc


if __name__ == "__main__":
    sys.exit(main())
