"""`harness` command line: prepare, search, train, transfer, deploy, report, list.

Every subcommand reads params.yaml (``--params``) and its active profile (``--profile``
overrides the file's ``profile`` key). Known input errors print one line naming the file or
key and exit with status 2, instead of a traceback. A file that cannot be written or read
(disk full, read-only file system, permissions, quota, a file that vanished mid-run) prints one
line naming the file, the reason and the size, and exits with status 1; atomic writes keep the
previous file, so the same command resumes once the cause is fixed.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    from backbones.atomic import CheckpointError
    from backbones.genotypes import GenotypeError
    from backbones.registry import BackboneContractError, UnknownBackboneError
    from backbones.resume import NonFiniteLossError
    from backbones.search.base import UnknownMethodError
    from harness.config import ConfigError
    from harness.data import DatasetError
    from harness.deploy.openvino_ir import DeployError
    from harness.records import RecordError
    from harness.runs import RunLockedError, RunNameError
    from harness.stages.common import OutputError
    errors: list[type[BaseException]] = [CheckpointError, GenotypeError, UnknownBackboneError,
                                         BackboneContractError,
                                         UnknownMethodError, ConfigError, DatasetError,
                                         NonFiniteLossError, OutputError, DeployError,
                                         RecordError, RunLockedError, RunNameError]
    for module, name in (("harness.report", "ReportError"),
                         ("downstream.reid.config", "ReIDConfigError"),
                         ("downstream.reid.data", "ReIDDataError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def seed_arg(text: str) -> int:
    """--seed: an integer >= 0 (it names the run folder seed<k>)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _params(args: argparse.Namespace):
    from harness.config import load_params
    return load_params(args.params, args.profile)


def cmd_prepare(args: argparse.Namespace) -> None:
    from harness.stages.prepare import run_prepare
    run_prepare(_params(args), seed=args.seed, console=console)


def cmd_search(args: argparse.Namespace) -> None:
    from backbones.distributed import is_main
    from harness.stages.search import run_search
    m = run_search(_params(args), args.method, args.seed, console=console)
    if is_main():
        console.print(f"[green]search {m['run']} seed {args.seed}: {m['search_seconds']:.1f} s "
                      f"on {m['device']}; genotype written")


def cmd_train(args: argparse.Namespace) -> None:
    from backbones.distributed import is_main
    from harness.stages.train import run_train
    m = run_train(_params(args), args.method, args.seed,
                  genotype_path=Path(args.genotype) if args.genotype else None, console=console)
    if is_main():
        console.print(f"[green]train {args.method} seed {args.seed}: top-1 {m['top1']:.2f}% "
                      f"top-5 {m['top5']:.2f}%, {m['params_m']:.3f} M params, "
                      f"{m['ops_m']:.2f} M OPs, {m['memory_mbit']:.2f} Mbit")


def cmd_transfer(args: argparse.Namespace) -> None:
    from harness.stages.transfer import run_transfer
    run_transfer(_params(args), task=args.task, backbone=args.backbone, seed=args.seed,
                 checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                 out_dir=Path(args.out) if args.out else None, detector=args.detector,
                 console=console)


def cmd_deploy(args: argparse.Namespace) -> None:
    from harness.stages.deploy import run_deploy
    m = run_deploy(_params(args), args.backbone, args.seed, paper_size=args.paper_size,
                   console=console)
    e = m["engines"]
    fp32 = f"FP32 IR {e['fp32_ir']['latency_1t']['median_ms']:.2f} ms, PyTorch " \
           f"{e['torch']['latency_1t']['median_ms']:.2f} ms"
    if m.get("real_valued"):
        console.print(f"[green]deploy {m['run']} (real-valued: no binary IR): top-1 agreement "
                      f"{m['agreement']['fp32_ir']['top1_agreement']:.2f}%; batch-1 latency "
                      f"(1 thread) {fp32}")
        return
    console.print(
        f"[green]deploy {m['run']}: {m['binary_convs']} BinaryConvolutions, top-1 agreement "
        f"{m['agreement']['binary_ir']['top1_agreement']:.2f}%; batch-1 latency (1 thread) "
        f"binary IR {e['binary_ir']['latency_1t']['median_ms']:.2f} ms, {fp32}; speed-up "
        f"{m['measured_speedup_1t']:.2f}x (OPs predict {m['predicted_speedup']:.2f}x)")


def cmd_report(args: argparse.Namespace) -> None:
    from harness.report import build_report
    params = _params(args)
    base = Path(params.paths.runs)
    if args.runs:
        runs = [Path(r) for r in args.runs]
    else:   # the active profile's runs, and its ImageNet-search profile's where they exist
        runs = [base / params.profile]
        if params.imagenet_profile and (base / params.imagenet_profile).is_dir():
            runs.append(base / params.imagenet_profile)
    out = Path(args.out or Path(params.paths.results) / "report")
    build_report(runs, out, console=Console())


def cmd_provenance(args: argparse.Namespace) -> None:
    from harness.provenance import show_provenance
    show_provenance(Path(args.path), Console())


def cmd_list(args: argparse.Namespace) -> None:
    from backbones.registry import list_backbones
    from backbones.search.base import list_search_methods
    out = Console()
    out.print("[bold]search methods:[/] " + ", ".join(list_search_methods()))
    out.print("[bold]backbones:[/] " + ", ".join(list_backbones())
              + ", or 'package.module:function'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    p.add_argument("--profile", default=None, help="profile to use instead of params' `profile`")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="generate the smoke data sets / check the real ones")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("search", help="search a 1-bit cell with one method")
    s.add_argument("--method", required=True, help="search method (see `harness list`) or the "
                   "name of an ablation in params.yaml (a method with changed settings)")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("train", help="retrain the 1-bit network of a searched genotype")
    # --method, not --run: torchrun would take --run as an abbreviation of its --run-path
    s.add_argument("--method", "--run", dest="method", required=True,
                   help="search run name (method or ablation name), or a registered backbone "
                        "(e.g. bireal_resnet18) to train as a reference")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.add_argument("--genotype", default=None, help="genotype JSON (default: the search run's)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("transfer", help="detection / re-ID transfer of a backbone")
    s.add_argument("--task", required=True, choices=["detection", "reid"])
    s.add_argument("--backbone", required=True,
                   help="a search run name (uses its retrained network), a registered "
                        "backbone name, or 'package.module:function'")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.add_argument("--checkpoint", default=None, help="classification checkpoint to start from")
    s.add_argument("--detector", default=None, help="detection: a name in the profile's "
                   "detect.configs (default: the first of `detectors`)")
    s.add_argument("--out", default=None, help="output folder (default runs/<profile>/<stage>/"
                   "<name>/seed<k>; detection: <name>-<detector>)")
    s.set_defaults(func=cmd_transfer)

    s = sub.add_parser("deploy", help="export a retrained 1-bit network to OpenVINO (real "
                       "BinaryConvolution kernels) and measure it against FP32 and PyTorch")
    s.add_argument("--backbone", required=True,
                   help="a search run or reference backbone retrained by `harness train`")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.add_argument("--paper-size", action="store_true",
                   help="deploy the cell at its paper size (deploy.paper_size), untrained")
    s.set_defaults(func=cmd_deploy)

    s = sub.add_parser("report", help="tables, plots and REPORT.md from the metrics files")
    s.add_argument("--runs", default=None, action="append",
                   help="runs folder, repeatable (default: <paths.runs>/<profile> and "
                   "<paths.runs>/<imagenet_profile>; give <paths.runs> for every profile)")
    s.add_argument("--out", default=None, help="output folder (default: <paths.results>/report)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("provenance", help="what made a run: code, settings, versions, data")
    s.add_argument("path", help="a run folder (runs/<profile>/<stage>/<name>/seed<k>) or its "
                   "metrics.json")
    s.set_defaults(func=cmd_provenance)

    s = sub.add_parser("list", help="list search methods and backbones")
    s.set_defaults(func=cmd_list)
    return p


def _set_threads() -> None:
    """One intra-op thread on CPU unless told otherwise (HARNESS_THREADS or OMP_NUM_THREADS):
    the smoke networks are tiny, and oversubscribed OpenMP threads made runs 5-10x slower on
    a busy 2-core machine. Set HARNESS_THREADS=N for large CPU runs."""
    import torch
    from harness.config import ConfigError
    var = "HARNESS_THREADS" if os.environ.get("HARNESS_THREADS") else "OMP_NUM_THREADS"
    wanted = os.environ.get(var) or "1"
    try:
        threads = int(wanted)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ConfigError(f"environment variable {var}={wanted!r}: expected a whole number of "
                          f"threads (>= 1)")
    if not torch.cuda.is_available():
        torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "report":
            _set_threads()
        args.func(args)
    except _user_errors() as exc:
        # escaped (a message like "expected [op, input]" is not rich markup) and unwrapped:
        # one line per problem, so that scripts and logs can grep it
        for line in getattr(exc, "problems", None) or [str(exc)]:
            console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
        return 2
    except OSError as exc:   # StorageError from our writes, or a library's own file I/O
        from backbones.atomic import storage_error_from
        console.print(f"[bold red]error:[/] {escape(str(storage_error_from(exc)))}", soft_wrap=True)
        return 1
    finally:
        from backbones.distributed import shutdown
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
