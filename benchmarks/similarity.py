"""Seconds of ``python -m autograder similarity`` on a class of N Lab 2 submissions (default 300).

    python benchmarks/similarity.py [-n N] [--seed S] [--smoke] [--keep DIR]

Builds N Lab 2 submissions at run time, in nbgrader's ``submitted/<student>/lab2_triplet/`` layout,
each with a ``triplet_net.pt`` beside the notebook. Each function of each student is drawn from the
versions the tests know (the reference's, the mistakes of ``tests/submissions/mistakes/``, the
released stub: an unfinished one), then disguised at random as a copier would (every local name
renamed, comments and blank lines added, one statement of its own added), so that most pairs of the
class share some code and many share most of it: more work for the report than a real class. Each
checkpoint is a ConvNet of its own seed; three students copy a classmate's file, re-save a
classmate's weights or add 0.5% noise to them, and one submits the course's ``mnist_triplet.pt``.
Then times the command end to end in a fresh process (imports included) and prints the seconds,
the seconds per submission, and how many pairs it flagged. ``--smoke``: 12 submissions. Nothing
is written into the repository.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository on the path

from autograder.paths import RELEASE_DIR, REPO, REPO_MODELS  # noqa: E402
from benchmarks.cli import positive_int, work_folder  # noqa: E402

LAB = "lab2_triplet"
SUBMISSIONS = REPO / "tests" / "submissions"
sys.path.insert(0, str(SUBMISSIONS))


def versions() -> dict[str, list[str]]:
    """``{function: [source, ...]}``: the reference's, the mistakes' and the released stub of each Lab 2 function."""
    import build
    import nbformat

    pools = {name: [code] for name, code in build.reference_code().items()}
    for lab in build.labs.lab_ids():
        for mistake in build.mistakes(lab):
            for name, code in build.mistake_code(lab, mistake).items():
                pools.setdefault(name, []).append(code)
    release = nbformat.read(RELEASE_DIR / f"{LAB}.ipynb", as_version=4)
    stubs = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells
             if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    return {name: pools[name] + [stub] for name, stub in stubs.items() if name in pools}


def disguise(source: str, rng: random.Random) -> str:
    """``source`` with every name it assigns or takes as a parameter renamed, comments and blank lines
    added, and one statement of its own at the top of the body."""
    import ast

    tree = ast.parse(source)
    bound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    renamed = {name: f"{rng.choice('abcdefghkmpqrstuvwxyz')}{rng.randrange(10 ** 6)}" for name in bound}
    # where the names are: every use of a renamed name (the source is ASCII: columns are characters)
    at = {(n.lineno, n.col_offset) for n in ast.walk(tree)
          if isinstance(n, ast.arg) and n.arg in bound or isinstance(n, ast.Name) and n.id in bound}
    out = [token._replace(string=renamed[token.string]) if token.type == tokenize.NAME and token.start in at else token
           for token in tokenize.generate_tokens(io.StringIO(source).readline)]
    lines = tokenize.untokenize(out).split("\n")
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef))
    first = function.body[1 if ast.get_docstring(function) is not None else 0]  # the first statement after it
    at = first.lineno - 1
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at, f"{indent}unused_{rng.randrange(10 ** 6)} = {rng.randrange(1000)} * {rng.random():.3f}  "
                     f"# note {rng.randrange(10 ** 6)}")
    for _ in range(3):
        where = rng.randrange(at, len(lines))
        if not lines[where].rstrip().endswith(("\\", ",", "(")):
            lines.insert(where, "")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def make_class(root: Path, n: int, seed: int) -> Path:
    """N submissions of Lab 2 under ``root/submitted/`` (see the module's docstring)."""
    import build
    import torch

    from labtools.models import ConvNet, save_checkpoint

    rng = random.Random(seed)
    pools = versions()
    students = [f"student{i:03d}" for i in range(n)]
    for i, student in enumerate(students):
        folder = root / "submitted" / student / LAB
        chosen = {name: rng.choice(pool) for name, pool in pools.items()}
        code = {name: source if "NotImplementedError" in source else disguise(source, rng)
                for name, source in chosen.items()}
        build.write_submission(folder, LAB, replace=code)
        torch.manual_seed(seed * 100_000 + i)
        save_checkpoint(folder / "triplet_net.pt", ConvNet(), dataset="MNIST", loss="triplet", seed=i, epochs=1,
                        history={"loss": [1.0], "loss_total": [100.0]})
    copiers = students[-4:]
    original = root / "submitted" / students[0] / LAB / "triplet_net.pt"
    shutil.copy(original, root / "submitted" / copiers[0] / LAB / "triplet_net.pt")  # the same file
    state = torch.load(original, weights_only=True)["state_dict"]
    for copier, noise in ((copiers[1], 0.0), (copiers[2], 0.005)):  # re-saved, then slightly changed
        net = ConvNet()
        net.load_state_dict({k: v + noise * v.norm() / v.numel() ** 0.5 * torch.randn(v.shape)
                             for k, v in state.items()})
        save_checkpoint(root / "submitted" / copier / LAB / "triplet_net.pt", net, dataset="MNIST", loss="triplet",
                        seed=7, epochs=1, history={"loss": [0.5], "loss_total": [50.0]})
    shutil.copy(REPO_MODELS / "mnist_triplet.pt", root / "submitted" / copiers[3] / LAB / "triplet_net.pt")
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=positive_int, default=300, help="number of submissions (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the class's draws (default 0)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 12 submissions")
    parser.add_argument("--keep", default=None, help="keep the work folder here instead of a temporary one")
    args = parser.parse_args(argv)
    n = 12 if args.smoke else args.n
    with work_folder(args.keep, "similarity-bench-") as work:
        make_class(work / "class", n, args.seed)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "autograder", "similarity", LAB, str(work / "class"), "--out",
                              str(work / "report")], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds = time.monotonic() - started
        if run.returncode != 0:
            print(run.stdout[-2000:], run.stderr[-3000:], file=sys.stderr)
            raise SystemExit("python -m autograder similarity failed")
        rows = (work / "report" / "similarity.csv").read_text().splitlines()[1:]
    flagged = [row for row in rows if ",yes," in row]
    cpu = f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
    print(f"Lab 2, {n} submissions ({cpu})")
    print(f"python -m autograder similarity: {seconds:.1f} s ({seconds / n * 1000:.0f} ms per submission)")
    print(f"rows of similarity.csv: {len(rows)}; flagged: {sum('.pt,' not in r for r in flagged)} pairs of functions, "
          f"{sum('.pt,' in r for r in flagged)} of checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
