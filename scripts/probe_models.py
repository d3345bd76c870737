"""Quick check of saved policies on the held-out clips: format, accuracy and explanation (ERV) reward means
under greedy decoding and at T 0.7 (2 seeds). Faster than `erv-lab evaluate` (no judge, no bootstrap); used
for the recipe table in docs/TRAINING.md.

    python scripts/probe_models.py --out runs/cpu-tiny sft/final baseline/final erv/final
    python scripts/probe_models.py --out /tmp/x --set sft.epochs=16 sft/final erv/final
"""
import argparse
from pathlib import Path

import numpy as np

from erv_lab import policy as P
from erv_lab import stages as S
from erv_lab import train as T
from erv_lab.config import load_config, run_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model folders, relative to the run folder")
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--out", default=None, help="run folder (default runs/<preset>)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = ap.parse_args(argv)
    cfg = load_config(args.preset, args.overrides)
    rd = Path(run_dir(cfg, args.out))
    test = S.ensure_dataset(cfg, rd)["test"]
    funcs, _ = T.arm_rewards(cfg, "erv", S.ensure_verifier(cfg, rd, progress=False))
    names = [f.__name__ for f in funcs]
    for sub in args.models:
        model, proc = P.load_policy(rd / sub, cfg.policy)
        for temp, seeds in ((0.0, [0]), (0.7, [0, 1])):
            res = {n: [] for n in names}
            for s in seeds:
                outs = P.generate(model, proc, test, temperature=temp, seed=s, max_new_tokens=cfg.eval.max_new_tokens,
                                  audio=cfg.policy)
                for f, n in zip(funcs, names):
                    res[n] += f(outs, solution=test["label"], dataset=test["dataset"])
            print(sub, f"T={temp}", {n: round(float(np.mean(v)), 3) for n, v in res.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
