"""What the integrations cost: the import of pbtune, and pbtune.torch's save and load.

    python benchmarks/integrations.py --base ../base-checkout          # import time, A/B
    python benchmarks/integrations.py --base ../base-checkout --repeats 15

1. ``import pbtune`` in a fresh interpreter, for this checkout and a ``--base`` checkout
   (``git worktree add ../base-checkout <commit>``), interleaved so that a noisy machine's
   drift is shared; the median of each and the ratio; and, in the same interpreter, the
   time until the API a study needs is loaded too (``pbtune.create_study``: since
   ``import pbtune`` loads it on first use, this is what a script pays). It also lists
   which optional libraries (torch, lightning, transformers, tensorboard, mlflow, ray) the
   import loaded: none, or the integrations leak into the core.
2. One trial's state written and read back with ``pbtune.torch.save`` / ``load`` against
   the same by hand (``torch.save`` of the state dicts, ``torch.load``,
   ``load_state_dict``), for an MLP and its AdamW state at two sizes, interleaved; the
   guard (params applied and checked, RNG states) is what pbtune adds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

OPTIONAL = ["torch", "lightning", "pytorch_lightning", "transformers", "tensorboard",
            "tensorboardX", "mlflow", "ray"]
PROBE = ("import sys, time; t = time.perf_counter(); import pbtune; "
         "d = time.perf_counter() - t; pbtune.create_study; "
         "api = time.perf_counter() - t; import json; "
         f"print(json.dumps([d, api, [m for m in {OPTIONAL!r} if m in sys.modules]]))")


def import_once(tree: Path) -> tuple[float, float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True, cwd=tempfile.gettempdir())
    seconds, api, loaded = json.loads(done.stdout)
    return float(seconds), float(api), list(loaded)


def imports(base: Path, repeats: int) -> dict[str, Any]:
    trees = {"base": base.resolve(), "new": common.ROOT}
    times: dict[str, list[float]] = {label: [] for label in trees}
    api: dict[str, list[float]] = {label: [] for label in trees}
    loaded: dict[str, list[str]] = {}
    for _ in range(repeats):
        for label, tree in trees.items():
            seconds, with_api, modules = import_once(tree)
            times[label].append(seconds)
            api[label].append(with_api)
            loaded[label] = modules
    medians = {label: common.median(values) for label, values in times.items()}
    api_medians = {label: common.median(values) for label, values in api.items()}
    return {"times_s": times, "median_s": medians, "optional_loaded": loaded,
            "ratio": medians["new"] / medians["base"],
            "with_api_s": api, "with_api_median_s": api_medians,
            "with_api_ratio": api_medians["new"] / api_medians["base"]}


def torch_state(repeats: int) -> dict[str, Any]:
    import torch

    import pbtune
    import pbtune.torch

    results: dict[str, Any] = {}
    for width in (256, 2048):
        model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(),
                                    torch.nn.Linear(width, width))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model(torch.randn(8, width)).sum().backward()
        optimizer.step()  # moments exist, as in a trained model
        parameters = sum(p.numel() for p in model.parameters())
        timings: dict[str, list[float]] = {"pbtune.torch": [], "by hand": []}
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            for repeat in range(repeats):
                for method in timings:
                    parent, child = root / f"{method}-{repeat}-p", root / f"{method}-{repeat}-c"
                    parent.mkdir(), child.mkdir()
                    first = pbtune.Trial(id=1, member=0, generation=0, params={"lr": 1e-3},
                                         start_step=0, end_step=10, parent_checkpoint=None,
                                         checkpoint_dir=parent, study_name="bench")
                    second = pbtune.Trial(id=2, member=1, generation=1, params={"lr": 2e-3},
                                          start_step=10, end_step=20, parent_checkpoint=parent,
                                          checkpoint_dir=child, study_name="bench")
                    started = time.perf_counter()
                    if method == "pbtune.torch":
                        pbtune.torch.save(first, model=model, optimizer=optimizer)
                        pbtune.torch.load(second, model=model, optimizer=optimizer)
                    else:
                        torch.save({"model": model.state_dict(),
                                    "optimizer": optimizer.state_dict()}, parent / "s.pt")
                        state = torch.load(parent / "s.pt", map_location="cpu")
                        model.load_state_dict(state["model"])
                        optimizer.load_state_dict(state["optimizer"])
                    timings[method].append(time.perf_counter() - started)
        medians = {method: common.median(values) for method, values in timings.items()}
        results[str(parameters)] = {
            "timings_s": timings, "median_s": medians,
            "ratio": medians["pbtune.torch"] / medians["by hand"],
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True,
                        help="a checkout to compare the import time with")
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    measured = imports(args.base, args.repeats)
    print(f"import pbtune: base {measured['median_s']['base']:.4f} s, new "
          f"{measured['median_s']['new']:.4f} s, new / base {measured['ratio']:.3f}; "
          f"optional libraries loaded: {measured['optional_loaded']}", flush=True)
    state = torch_state(args.repeats)
    api = measured["with_api_median_s"]
    rows = [["import pbtune (s)", f"{measured['median_s']['base']:.4f}",
             f"{measured['median_s']['new']:.4f}", f"{measured['ratio']:.3f}"],
            ["import pbtune, then pbtune.create_study (s)", f"{api['base']:.4f}",
             f"{api['new']:.4f}", f"{measured['with_api_ratio']:.3f}"]]
    for parameters, figures in state.items():
        median = figures["median_s"]
        print(f"save + load, {int(parameters):,} parameters + AdamW state: pbtune.torch "
              f"{median['pbtune.torch']:.4f} s, by hand {median['by hand']:.4f} s, ratio "
              f"{figures['ratio']:.3f}", flush=True)
        rows.append([f"save + load, {int(parameters):,} parameters (s)",
                     f"{median['by hand']:.4f}", f"{median['pbtune.torch']:.4f}",
                     f"{figures['ratio']:.3f}"])
    command = " ".join(["python", "benchmarks/integrations.py", *sys.argv[1:]])
    shown = common.table(["figure (median)", "base / by hand", "new / pbtune.torch", "ratio"],
                         rows)
    print(shown)
    base_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.base,
                                 capture_output=True, text=True).stdout.strip()
    markdown = "\n".join([
        "### What the integrations cost", "",
        f"`{command}`: {args.repeats} interleaved runs each. The import against base "
        f"{base_commit}; optional libraries loaded by `import pbtune`: "
        f"{measured['optional_loaded']['new'] or 'none'}. Save + load: one trial's "
        "`pbtune.torch.save` and the next trial's `load` (state read, params applied and "
        "checked, RNG states), against `torch.save` / `torch.load` / `load_state_dict` by "
        "hand.", "", shown, "", common.env_line(common.environment()),
    ])
    common.write_results("integrations", {
        "benchmark": "integrations", "command": command, "imports": measured,
        "torch_state": state, "environment": common.environment(),
    }, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
