"""`autotts import`: public-format JSON trajectories → Parquet replay stores."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="convert public-format JSON trajectories into Parquet replay stores",
        description="Read .json/.json.gz files (or directories laid out as <model>/<dataset>.json[.gz]) and "
                    "write <out>/<model>/<dataset>.parquet for each.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to import")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--model", help="model name (default: the parent directory's name)")
    p.add_argument("--dataset", help="dataset name (default: the file name without suffix)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.offline.importer import find_data_files
    from autotts.offline.store import load_store

    for path in find_data_files(args.paths):
        store = load_store(path, model=args.model, dataset=args.dataset)
        target = store.write_parquet(Path(args.out) / store.model / f"{store.dataset}.parquet")
        print(f"{path} -> {target} ({store.n_questions} questions, "
              f"{int(store.question_offsets[-1])} branches, Δ={store.segment_tokens})")
    return 0
