"""Regenerate the feature networks that ship in the package (src/noisecraft/evaluation/weights/).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_feature_nets.py            # both; writes the files
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_feature_nets.py --check    # retrain, compare, write nothing

The recipe is ``noisecraft.evaluation.features.train_feature_net`` (fixed seed, fixed batch order, one CPU
thread, float32). Fashion-MNIST needs its IDX files (``apt-get install dataset-fashion-mnist``). After
writing, paste the printed SHA-256 values into ``WEIGHTS_SHA256`` in evaluation/features.py: the package
verifies every load against them. A retrain on another machine or torch build may differ in the last bits
(that is why the weights ship instead of being trained on each machine); --check reports whether it does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from noisecraft.evaluation import features


def write(net: torch.nn.Module, acc: float, dataset: str, path: Path) -> str:
    meta = {
        "dataset": dataset,
        "version": str(features.FEATURE_VERSION),
        "test_accuracy": f"{acc:.4f}",
        "recipe": "noisecraft.evaluation.features.train_feature_net(dataset), seed 0",
        "torch": torch.__version__,
    }
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return features.file_sha256(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(features.REFERENCE_DATASETS))
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped files only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    same = True
    for ds in args.datasets:
        net, acc = features.train_feature_net(ds)
        shipped = features.weights_path(ds)
        if args.check:
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d) / shipped.name
                write(net, acc, ds, tmp)
                a = features.BuiltinFeatures(ds, path=tmp).net.state_dict()
            b = features.BuiltinFeatures(ds).net.state_dict()
            diff = max(float((a[k] - b[k]).abs().max()) for k in a)
            same &= diff == 0
            print(f"{ds}: test accuracy {acc:.4f}; max |retrained - shipped| weight difference {diff:.3g}")
        else:
            shipped.parent.mkdir(parents=True, exist_ok=True)
            sha = write(net, acc, ds, shipped)
            print(
                f'{ds}: test accuracy {acc:.4f}; wrote {shipped} ({shipped.stat().st_size} bytes)\n    "{ds}": "{sha}",'
            )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
