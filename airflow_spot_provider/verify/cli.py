"""``spot-verify-resume``: the command line of the verification.

Exit status: 0 the trainer resumes (pass), 1 it does not (fail, or the reference run failed),
2 bad usage (the message names the option, the value and the rule), 3 inconclusive (a run ended
before its planned interruption, also when made again with an earlier one: nothing was tested).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_spot_provider.exceptions import shown
from airflow_spot_provider.verify.artifacts import Tolerance
from airflow_spot_provider.verify.report import EXIT_FAIL, EXIT_USAGE
from airflow_spot_provider.verify.spec import TrainerSpec, VerifyOptions, VerifyUsageError

EPILOG = """\
examples:
  spot-verify-resume --source-dir dags/training --entry-point train.py \\
      --hyperparameters '{"total_steps": 60, "step_sleep": 0.05}'
  spot-verify-resume --request job.json --source-dir src/ --data train=data/ --json
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="spot-verify-resume",
        description="Check on the embedded SageMaker spot backend that a training script "
        "resumes from its checkpoints after spot interruptions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("the trainer (script mode, or a full request)")
    what.add_argument(
        "--source-dir", type=Path, help="directory of the entry point (required in script mode)"
    )
    what.add_argument(
        "--entry-point",
        help="the script, relative to --source-dir, e.g. train.py (required in script mode)",
    )
    what.add_argument(
        "--hyperparameters", default="{}", help="JSON object of hyperparameters, or @file.json"
    )
    what.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="CHANNEL=DIR",
        help="a small local input directory, uploaded as that channel (repeatable)",
    )
    what.add_argument("--request", help="a CreateTrainingJob request JSON file instead")
    what.add_argument("--instance-type", default="ml.m5.large")
    how = parser.add_argument_group("the verification")
    how.add_argument("--runs", type=int, default=4, help="interrupted runs (default 4)")
    how.add_argument("--seed", type=int, default=0, help="seed of the interruption points")
    how.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of the model")
    how.add_argument("--atol", type=float, default=0.0, help="absolute tolerance of the model")
    how.add_argument(
        "--max-lost-seconds",
        type=float,
        help="work one interruption may cost (default: 1 interval)",
    )
    how.add_argument("--require-sigterm-checkpoint", action="store_true")
    how.add_argument("--notice-seconds", type=float, default=2.0, help="SIGTERM to SIGKILL")
    how.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds the reference run, then the interrupted runs, may take",
    )
    how.add_argument("--json", action="store_true", help="print the report as JSON (for CI)")
    return parser


# The fields of TrainerSpec and VerifyOptions that an option sets: a usage error names the option.
OPTION_OF_FIELD = {
    "source_dir": "--source-dir",
    "entry_point": "--entry-point",
    "data": "--data",
    "request": "--request",
    "instance_type": "--instance-type",
    "runs": "--runs",
    "seed": "--seed",
    "max_lost_seconds": "--max-lost-seconds",
    "notice_seconds": "--notice-seconds",
    "timeout_seconds": "--timeout",
}


def _as_option(err: VerifyUsageError) -> VerifyUsageError:
    """The same error, naming the command line option instead of the Python field."""
    field = (err.field or "").partition("[")[0]
    option = OPTION_OF_FIELD.get(field)
    if option is None or err.field is None:
        return err
    named = option + err.field[len(field) :]  # "--data[train]" keeps the channel
    given = "" if err.value is None else f"={shown(err.value)}"  # an option not given has none
    message = f"{named}{given}: {err.rule}"
    return VerifyUsageError(message, field=option, value=err.value, rule=err.rule)


def _json_arg(name: str, text: str) -> Any:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as err:
            # strerror, not the error: its text repeats the file name, of any size.
            rule = f"cannot read the file ({err.strerror or type(err).__name__})"
            raise VerifyUsageError(f"{name}={shown(text)}: {rule}") from err
        except UnicodeDecodeError as err:
            rule = f"the file is not UTF-8 text ({err.reason} at byte {err.start})"
            raise VerifyUsageError(f"{name}={shown(text)}: {rule}") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise VerifyUsageError(f"{name}={shown(text)}: not JSON ({err})") from err


def _channels(values: Sequence[str]) -> dict[str, Path]:
    channels: dict[str, Path] = {}
    for value in values:
        name, sep, directory = value.partition("=")
        if not sep or not name or not directory:
            raise VerifyUsageError(f"--data={shown(value)}: must be CHANNEL=DIR")
        channels[name] = Path(directory)
    return channels


def parse(argv: Sequence[str] | None) -> tuple[TrainerSpec, VerifyOptions, bool]:
    """The trainer, the options and whether to print JSON.

    :param argv: the arguments (``sys.argv[1:]`` when None).
    :raises VerifyUsageError: a bad value.
    :raises SystemExit: argparse's own usage errors (status 2).
    """
    args = build_parser().parse_args(argv)
    hps = _json_arg("--hyperparameters", args.hyperparameters)
    if not isinstance(hps, dict):
        raise VerifyUsageError(f"--hyperparameters={shown(hps)}: must be a JSON object")
    try:
        tolerance = Tolerance(rtol=args.rtol, atol=args.atol)
    except ValueError as err:
        raise VerifyUsageError(f"--rtol/--atol: {err}") from err
    try:
        spec, options = _spec_and_options(args, hps, tolerance)
    except VerifyUsageError as err:
        raise _as_option(err) from err
    return spec, options, args.json


def _spec_and_options(
    args: argparse.Namespace, hps: dict[str, Any], tolerance: Tolerance
) -> tuple[TrainerSpec, VerifyOptions]:
    """Check the parsed arguments as the Python API does (errors name its fields)."""
    options = VerifyOptions(
        runs=args.runs,
        seed=args.seed,
        tolerance=tolerance,
        max_lost_seconds=args.max_lost_seconds,
        require_sigterm_checkpoint=args.require_sigterm_checkpoint,
        notice_seconds=args.notice_seconds,
        timeout_seconds=args.timeout,
    )
    request = None if args.request is None else _json_arg("--request", "@" + args.request)
    spec = TrainerSpec(
        source_dir=args.source_dir,
        entry_point=args.entry_point,
        hyperparameters=hps,
        data=_channels(args.data),
        request=request,
        instance_type=args.instance_type,
    )
    return spec, options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verification; the exit status.

    :param argv: the arguments (``sys.argv[1:]`` when None).
    """
    try:
        spec, options, as_json = parse(argv)
    except VerifyUsageError as err:
        print(f"spot-verify-resume: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    from botocore.exceptions import ClientError

    from airflow_spot_provider.verify.api import ReferenceRunError, verify_resume

    try:
        report = verify_resume(spec, options)
    except ClientError as err:  # the backend refused the request (bad image, bad field...)
        print(f"spot-verify-resume: error: the request was refused: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ReferenceRunError as err:
        if as_json:
            print(json.dumps({"error": str(err), "exit_status": EXIT_FAIL}))
        print(f"spot-verify-resume: {err}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(report.to_json(), indent=2) if as_json else report.text())
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main())
