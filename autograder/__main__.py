"""Command line of the instructor side: ``python -m autograder <command> ...``."""

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a reference checkpoint into models/")
    train.add_argument("name", help="configuration name, e.g. mnist_classifier")
    train.add_argument("--epochs", type=int, default=None, help="override the configuration's epochs")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    train.add_argument("--out", default=None, help="output folder (default: models/)")
    train.add_argument("--precision", default="fp32",
                       help="arithmetic of the forward pass: fp32 (default) or bf16 (faster only with bfloat16 in "
                            "hardware, see benchmarks/README.md; refused where the hardware lacks it)")

    rescore_parser = commands.add_parser("rescore", help="measure shipped checkpoints again and update their cards' scores")
    rescore_parser.add_argument("names", nargs="+", help="checkpoint names, e.g. mnist_classifier")

    unseen = commands.add_parser("unseen", help="Lab 4's and Lab 5's studies: train the missing runs into "
                                 "models/lab4/ and models/lab5/, write their tables results.md")
    unseen.add_argument("names", nargs="*", help="runs, e.g. fashion_arcface_heldout (default: all)")
    unseen.add_argument("--rescore", action="store_true", help="measure the shipped runs again and update their cards")
    unseen.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")

    demo = commands.add_parser("demo", help="retrieval figures and mAP of the shipped MNIST networks")
    demo.add_argument("--out", default="out/demo", help="folder for the figures (default: out/demo)")

    release = commands.add_parser("release", help="build the student bundle (folder and zip)")
    release.add_argument("--out", default="out/release", help="output folder (default: out/release)")

    grade = commands.add_parser("grade", help="grade submissions with nbgrader and the trusted checks")
    grade.add_argument("lab", help="lab id, e.g. lab1_retrieval")
    grade.add_argument("submissions", help="folder submitted/<student>/<lab>/ (or its parent), or an LMS zip")
    grade.add_argument("--out", default="out/grading", help="output folder (default: out/grading)")
    grade.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel submissions")
    grade.add_argument("--course", default=None, help="course folder (default: autograder/course)")
    grade.add_argument("--time-limit", type=float, default=600.0, help="seconds per submission")
    grade.add_argument("--keep-work", action="store_true", help="keep each submission's course copy in OUT/work")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="grade without the OS sandbox (bubblewrap): student code then runs with your rights; "
                            "every row says 'not sandboxed'")
    grade.add_argument("--no-similarity", action="store_true",
                       help="leave out the similarity report (OUT/similarity.csv and .html) after the grade table")

    similar = commands.add_parser("similarity", help="which students' functions and checkpoints are alike "
                                  "(flags only, changes no grade)")
    similar.add_argument("lab", help="lab id, e.g. lab2_triplet")
    similar.add_argument("submissions", help="folder submitted/<student>/<lab>/ (or its parent), a zip, or an LMS zip")
    similar.add_argument("--out", default="out/similarity", help="output folder (default: out/similarity)")
    similar.add_argument("--release", default=None,
                         help="the notebook every student started from (default: notebooks/<lab>.ipynb)")

    check = commands.add_parser("check", help="run public and hidden checks on one notebook (no nbgrader)")
    check.add_argument("notebook")
    check.add_argument("--lab", default=None)
    check.add_argument("--no-sandbox", action="store_true", help="run the checks without the OS sandbox")

    course = commands.add_parser("course", add_help=False, help="the course on this machine: JupyterHub with the "
                                 "instructor's nbgrader course and student logins (up, down, status; root)")
    course.add_argument("arguments", nargs=argparse.REMAINDER, help="up [--students N] [--port P] | down | status")

    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["course"]:  # its own parser: python -m autograder course --help lists up, down, status
        from autograder.hub.cli import main as course_main

        return course_main(arguments[1:])
    args = parser.parse_args(argv)
    if args.command == "grade":
        from pathlib import Path

        from autograder.grading.grade import grade as run_grade
        from autograder.paths import COURSE_DIR

        results = run_grade(args.lab, Path(args.submissions), Path(args.out), jobs=args.jobs,
                            course=Path(args.course) if args.course else COURSE_DIR, time_limit=args.time_limit,
                            keep_work=args.keep_work, sandboxed=not args.no_sandbox,
                            similarity=not args.no_similarity)
        return 3 if any(c.get("grader_error") for r in results for c in r["checks"]) else 0
    if args.command == "similarity":
        from pathlib import Path

        from autograder.similarity import similarity

        similarity(args.lab, Path(args.submissions), Path(args.out), Path(args.release) if args.release else None)
        return 0
    if args.command == "check":
        from pathlib import Path

        from autograder.grading.trusted import default_limits, grade_submission
        from labtools.checks.engine import lab_of
        from labtools.sandbox import SandboxUnavailable, require

        path = Path(args.notebook)
        if not path.is_file():
            check.error(f"no notebook at {path}")
        try:
            args.no_sandbox or require()
        except SandboxUnavailable as error:
            check.error(f"{error}; or pass --no-sandbox to run the submission's code with your rights")
        result = grade_submission(path, args.lab or lab_of(path), limits=default_limits(not args.no_sandbox))
        for c in result["checks"]:
            print(f"{c['check']:36} {c['points']:g}/{c['max_points']:g}  {c['message']}")
        return 0
    if args.command == "train":
        import torch

        from autograder.checkpoints import CONFIGS, MODELS_DIR, train_checkpoint
        from autograder.training import PRECISIONS, check_precision

        if args.name not in CONFIGS:
            train.error(f"unknown configuration {args.name!r}; expected one of {', '.join(CONFIGS)}")
        if args.epochs is not None and args.epochs < 1:
            train.error(f"--epochs must be at least 1, got {args.epochs}")
        if args.precision not in PRECISIONS:
            train.error(f"--precision must be one of {', '.join(PRECISIONS)}, got {args.precision!r}")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            check_precision(args.precision, torch.device(device))
        except ValueError as error:
            train.error(str(error))
        card = train_checkpoint(args.name, epochs=args.epochs, device=device, out=args.out or MODELS_DIR,
                                precision=args.precision)
        print(card["scores"])
    elif args.command == "rescore":
        from autograder.checkpoints import MODELS_DIR, rescore

        shipped = sorted(path.stem for path in MODELS_DIR.glob("*.json"))
        unknown = [name for name in args.names if name not in shipped]
        if unknown:
            rescore_parser.error(f"no shipped checkpoint {', '.join(map(repr, unknown))} in {MODELS_DIR}; "
                                 f"expected some of {', '.join(shipped)}")
        for name in args.names:
            print(name, rescore(name)["scores"])
    elif args.command == "unseen":
        from autograder.labs.lab4_beyond.study import main as study
        from autograder.labs.lab5_dvml.study import ALL_RUNS

        unknown = sorted(set(args.names) - set(ALL_RUNS))
        if unknown:
            parser.error(f"unknown runs {unknown}; expected some of {list(ALL_RUNS)}")
        print(study(ALL_RUNS, args.names, rescore=args.rescore, device=args.device), end="")
    elif args.command == "demo":
        from pathlib import Path

        from autograder.demo import run

        run(Path(args.out))
    elif args.command == "release":
        from autograder.release import build

        print(f"student bundle: {build(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
